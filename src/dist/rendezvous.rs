//! The rendezvous of a torchrun launch: rank 0 hands NCCL's unique id to every other rank over
//! TCP on MASTER_ADDR:MASTER_PORT (the role PyTorch's TCPStore plays for its NCCL groups). It
//! carries only the 128-byte id; every collective afterwards goes through NCCL.
//!
//! torchrun's agent already serves a TCPStore there (it says so with
//! TORCHELASTIC_USE_AGENT_STORE=True): rank 0 then sets the id under a key of that store and the
//! others wait for it and get it, speaking the store's wire protocol (store.rs). Without the
//! agent's store (the variables set by hand or another launcher), rank 0 listens on the port
//! itself and sends the id to each rank that connects.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// What a rank sends first, so rank 0 ignores a stray connection to its port.
const GREETING: &[u8; 16] = b"ferronet-nccl-id";

/// Pause between tries while rank 0 (or torchrun's store) is not listening yet, and between
/// accepts.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Where the ranks meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Master {
    pub addr: String,
    pub port: u16,
    /// torchrun's agent serves a TCPStore at the address (TORCHELASTIC_USE_AGENT_STORE=True):
    /// the key the id goes under (it names the agent's restart, so a restarted job draws anew).
    pub agent_store_key: Option<String>,
}

/// Rank 0: hands `id` to the `world - 1` other ranks.
pub fn share_id(master: &Master, world: usize, id: &[u8; 128], timeout: Duration) -> Result<()> {
    match &master.agent_store_key {
        Some(key) => super::store::set(master, key, id, timeout),
        None => serve_id(master, world, id, timeout),
    }
}

/// Every other rank: rank 0's id.
pub fn receive_id(master: &Master, timeout: Duration) -> Result<[u8; 128]> {
    match &master.agent_store_key {
        Some(key) => {
            let value = super::store::wait_and_get(master, key, timeout)?;
            value.try_into().map_err(|v: Vec<u8>| failed(format!("the store's {key} holds {} bytes, not NCCL's 128", v.len())))
        }
        None => fetch_id(master, timeout),
    }
}

pub(super) fn failed(what: String) -> Error {
    Error::Distributed(format!("torchrun rendezvous: {what}"))
}

/// Rank 0: waits (at most `timeout`) for the `world - 1` other ranks and sends each `id`.
fn serve_id(master: &Master, world: usize, id: &[u8; 128], timeout: Duration) -> Result<()> {
    // On every interface, as TCPStore's server: MASTER_ADDR is how the others reach this host.
    let listener = TcpListener::bind(("0.0.0.0", master.port)).map_err(|e| {
        failed(format!(
            "rank 0 cannot listen on MASTER_PORT={} ({e}): give a free port (under torchrun, whose agent serves its \
             store there, TORCHELASTIC_USE_AGENT_STORE=True says so)",
            master.port
        ))
    })?;
    listener.set_nonblocking(true).map_err(|e| failed(e.to_string()))?;
    let deadline = Instant::now() + timeout;
    let mut served = 1;
    while served < world {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).map_err(|e| failed(e.to_string()))?;
                stream.set_read_timeout(Some(timeout)).map_err(|e| failed(e.to_string()))?;
                let mut greeting = [0u8; 16];
                if stream.read_exact(&mut greeting).is_ok() && &greeting == GREETING && stream.write_all(id).is_ok() {
                    served += 1;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => std::thread::sleep(RETRY_PAUSE),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(failed(format!(
                    "{} of {world} ranks did not connect to port {} within {} s; start every rank, or raise --collective-timeout",
                    world - served,
                    master.port,
                    timeout.as_secs()
                )))
            }
            Err(e) => return Err(failed(format!("accepting a rank on port {}: {e}", master.port))),
        }
    }
    Ok(())
}

/// Every other rank: connects to rank 0, retrying until `timeout` (it may not listen yet), and
/// reads the id.
fn fetch_id(master: &Master, timeout: Duration) -> Result<[u8; 128]> {
    let handshake = |mut stream: TcpStream| {
        stream.write_all(GREETING)?;
        let mut id = [0u8; 128];
        stream.read_exact(&mut id)?;
        Ok(id)
    };
    connect_retrying(master, timeout, handshake, |endpoint| format!("rank 0 did not hand out NCCL's id on {endpoint}"))
}

/// What `handshake` makes of a connection to MASTER_ADDR:MASTER_PORT, retried until `timeout`
/// (rank 0 or torchrun's agent may not listen yet); past it, one line that begins with
/// `unanswered(endpoint)`.
pub(super) fn connect_retrying<T>(
    master: &Master,
    timeout: Duration,
    handshake: impl Fn(TcpStream) -> std::io::Result<T>,
    unanswered: impl Fn(&str) -> String,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let endpoint = format!("{}:{}", master.addr, master.port);
    loop {
        let attempt = (|| {
            let addr = endpoint.to_socket_addrs()?.next().ok_or(std::io::ErrorKind::AddrNotAvailable)?;
            let stream = TcpStream::connect_timeout(&addr, timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            handshake(stream)
        })();
        match attempt {
            Ok(value) => return Ok(value),
            Err(_) if Instant::now() < deadline => std::thread::sleep(RETRY_PAUSE),
            Err(e) => {
                return Err(failed(format!(
                    "{} within {} s ({e}); check MASTER_ADDR and MASTER_PORT",
                    unanswered(&endpoint),
                    timeout.as_secs()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_0_hands_its_id_to_the_others() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let master = Master { addr: "127.0.0.1".into(), port, agent_store_key: None };
        let mut id = [0u8; 128];
        id[..5].copy_from_slice(b"12345");
        let others: Vec<_> = (0..2)
            .map(|_| {
                let master = master.clone();
                std::thread::spawn(move || fetch_id(&master, Duration::from_secs(10)).unwrap())
            })
            .collect();
        serve_id(&master, 3, &id, Duration::from_secs(10)).unwrap();
        for other in others {
            assert_eq!(other.join().unwrap(), id);
        }
        let err = fetch_id(&Master { addr: "127.0.0.1".into(), port, agent_store_key: None }, Duration::from_millis(100)).unwrap_err().to_string();
        assert!(err.contains("MASTER_ADDR and MASTER_PORT"), "{err}");
    }
}
