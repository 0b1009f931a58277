//! Publisher side: one thread per publishing connection writes pre-encoded batches of `PUB` frames
//! (one `write_all` per batch), asks the [`Gate`] for room before each batch, and ends with a
//! PING/PONG so the server has provably processed every message it was sent.

use crate::conn::Conn;
use crate::flow::Gate;
use crate::proto::PubBatch;
use crate::subscriber::Control;
use anyhow::{Context, Result};
use std::io::Write;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// What one publisher is to send: `count` messages numbered from `first_seq`.
pub struct PubJob {
    pub conn: Conn,
    pub batch: PubBatch,
    pub first_seq: u64,
    pub count: u64,
}

/// How long the server may take to answer the final PING (it has all messages queued by then).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Run the job after `start` releases; returns when the server's PONG for the last batch arrived.
pub fn spawn(
    mut job: PubJob,
    gate: Arc<Gate>,
    ctl: Arc<Control>,
    start: Arc<Barrier>,
) -> std::thread::JoinHandle<Result<Instant>> {
    std::thread::Builder::new()
        .name("pub".into())
        .spawn(move || {
            start.wait();
            let r = publish(&mut job, &gate, &ctl);
            if r.is_err() {
                ctl.abort.store(true, SeqCst);
            }
            r
        })
        .expect("spawn publisher thread")
}

fn publish(job: &mut PubJob, gate: &Gate, ctl: &Control) -> Result<Instant> {
    let per_batch = job.batch.frames() as u64;
    let mut seq = job.first_seq;
    let end = job.first_seq + job.count;
    while seq < end {
        if ctl.abort.load(SeqCst) {
            anyhow::bail!("aborted");
        }
        let n = per_batch.min(end - seq);
        gate.wait_room(n, &ctl.abort);
        job.conn
            .stream
            .write_all(job.batch.numbered(seq, n as usize))
            .with_context(|| {
                format!(
                    "{}: publishing failed after {} messages",
                    job.conn.name,
                    seq - job.first_seq
                )
            })?;
        gate.add_sent(n);
        seq += n;
    }
    job.conn.flush(FLUSH_TIMEOUT)?;
    Ok(Instant::now())
}
