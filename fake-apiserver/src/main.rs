//! `fake-apiserver`: serves an empty fake API server until killed, for manual use with kubectl.

use fake_apiserver::FakeApiServer;
use std::net::SocketAddr;
use std::process::ExitCode;

const USAGE: &str = "usage: fake-apiserver [--listen 127.0.0.1:PORT] [--print-port] \
                     [--kubeconfig PATH] [--history-limit N] [--log-requests]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-apiserver: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (mut print_port, mut log_requests) = (false, false);
    let (mut kubeconfig, mut history_limit) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?,
            "--print-port" => print_port = true,
            "--kubeconfig" => kubeconfig = Some(value()?),
            "--history-limit" => {
                history_limit = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--history-limit: {e}"))?,
                );
            }
            "--log-requests" => log_requests = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let server = FakeApiServer::start_on(listen).map_err(|e| e.to_string())?;
    server.set_log_requests(log_requests);
    if let Some(n) = history_limit {
        server.set_history_limit(n);
    }
    if let Some(path) = kubeconfig {
        server
            .kubeconfig(&path)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    if print_port {
        // One line, flushed, so a parent process can read the port and go on.
        println!("{}", server.addr().port());
    } else {
        eprintln!("fake-apiserver: serving {}", server.url());
    }
    loop {
        std::thread::park();
    }
}
