//! Reading a guest's size parameter the same way under `tensor-wasm run`
//! (argv) and through the gateway (a bytes call's body is stdin).

use std::io::Read;

/// The first command-line argument, else the first whitespace-separated word
/// on stdin, parsed as a `usize`; `default` when absent or unparsable.
pub fn usize_param(default: usize) -> usize {
    if let Some(arg) = std::env::args().nth(1) {
        return arg.trim().parse().unwrap_or(default);
    }
    let mut input = String::new();
    let _ = std::io::stdin().read_to_string(&mut input);
    input
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(default)
}
