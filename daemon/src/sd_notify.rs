//! systemd's notify protocol (`Type=notify`): `READY=1`, `WATCHDOG=1`, `STOPPING=1` as datagrams to
//! `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). A no-op when not run by systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends one state line; false when there is no socket or the send failed.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    // Never block the caller (an async runtime thread) on a receiver that stopped reading.
    if sock.set_nonblocking(true).is_err() {
        return false;
    }
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => send_abstract(&sock, name, state),
        None => sock.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = &sent {
        tracing::warn!(error = %e, "sd_notify failed");
    }
    sent.is_ok()
}

#[cfg(target_os = "linux")]
fn send_abstract(sock: &UnixDatagram, name: &[u8], state: &str) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
        .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
}

/// Abstract socket names are Linux's; systemd runs nowhere else.
#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// Half of `WatchdogSec` when systemd asked this process (by `WATCHDOG_PID`, if set) for keep-alives.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}
