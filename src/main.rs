//! The `ers-bridge` binary: a thin shell over [`ers_bridge::cli`].

fn main() -> std::process::ExitCode {
    ers_bridge::cli::main()
}
