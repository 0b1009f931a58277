fn main() {
    // The CLI is being written (src/main.rs owns argument parsing and the summary).
}
