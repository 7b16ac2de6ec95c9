//! `vipa-sim`: run a simulated VIPA reader.

fn main() {
    eprintln!("vipa-sim: not implemented yet");
    std::process::exit(2);
}
