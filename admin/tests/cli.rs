//! The CLI as an operator starts it, before any server is involved: its usage names every
//! command, and a command it does not know fails. The commands against a server are
//! `scripts/admin-smoke.sh` (`make test`), which runs this same binary: this file is also why
//! `cargo test` builds it, with the test build's features, so `make test` links it without a
//! build of its own.

use std::process::Command;

fn admin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_admin")).args(args).output().expect("the admin binary runs")
}

#[test]
fn the_usage_names_every_command() {
    let out = admin(&["--help"]);
    assert!(out.status.success(), "{out:?}");
    let usage = String::from_utf8_lossy(&out.stdout);
    for command in ["tables", "account", "system", "client", "keys", "usage"] {
        assert!(usage.contains(command), "{command} missing from:\n{usage}");
    }
}

#[test]
fn an_unknown_command_fails_and_says_so() {
    let out = admin(&["nonsense"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonsense"), "{out:?}");
}
