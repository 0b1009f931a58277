fn main() {
    // Wired up by the CLI work: parse flags, load config, start the server.
    let _ = natsd::options::Options::default();
}
