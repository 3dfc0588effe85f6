//! `agentd healthcheck`: one plain HTTP/1.1 GET, exit 0 on a 2xx answer and 1 otherwise, for
//! container health checks (the distroless image has no curl or shell).
//!
//! By default it asks `/healthz` on the port of `AGENTD_LISTEN` (the image sets it) over
//! loopback: the check must not depend on anything but the process it checks.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

#[derive(Args)]
pub(super) struct HealthcheckArgs {
    /// URL to GET (http:// only). Default: http://127.0.0.1:<port of AGENTD_LISTEN, else
    /// 8080>/healthz.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Seconds to wait for the connection and the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    timeout: u64,
}

pub(super) fn run(args: HealthcheckArgs) -> ExitCode {
    let url = args
        .url
        .unwrap_or_else(|| default_url(std::env::var("AGENTD_LISTEN").ok().as_deref()));
    match check(&url, Duration::from_secs(args.timeout.max(1))) {
        Ok(status) => {
            eprintln!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{url}: unhealthy: {e}");
            ExitCode::from(1)
        }
    }
}

/// `/healthz` on the listen address's port, through loopback when it listens on every address.
fn default_url(listen: Option<&str>) -> String {
    let addr = listen
        .and_then(|l| l.trim().parse::<SocketAddr>().ok())
        .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080));
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/healthz", SocketAddr::new(ip, addr.port()))
}

/// GETs `url`; `Ok(status)` for 2xx.
fn check(url: &str, timeout: Duration) -> Result<u16, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} has no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    // One write: a server may answer (and close) as soon as the head is complete.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: agentd-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    // The status line is all we need.
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 1024 {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {:?}", line.trim_end()))?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot server answering with `status`; returns its URL.
    fn serve_once(status: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 256];
            while !head.ends_with(b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            assert!(head.starts_with(b"GET /healthz HTTP/1.1\r\n"));
            let _ =
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
        });
        format!("http://{addr}/healthz")
    }

    #[test]
    fn two_hundreds_are_healthy_and_the_rest_are_not() {
        let t = Duration::from_secs(2);
        assert_eq!(check(&serve_once("200 OK"), t), Ok(200));
        assert_eq!(
            check(&serve_once("503 Service Unavailable"), t),
            Err("HTTP 503".to_owned())
        );
        // Nothing listening.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(check(&format!("http://127.0.0.1:{port}/healthz"), t).is_err());
        assert!(check("https://example.com/", t).is_err());
    }

    #[test]
    fn the_default_url_follows_agentd_listen() {
        assert_eq!(default_url(None), "http://127.0.0.1:8080/healthz");
        assert_eq!(
            default_url(Some("0.0.0.0:9000")),
            "http://127.0.0.1:9000/healthz"
        );
        assert_eq!(default_url(Some("[::]:8081")), "http://[::1]:8081/healthz");
        assert_eq!(
            default_url(Some("10.0.0.5:8080")),
            "http://10.0.0.5:8080/healthz"
        );
        assert_eq!(default_url(Some("junk")), "http://127.0.0.1:8080/healthz");
    }
}
