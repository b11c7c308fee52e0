//! The emulated NCCL's transport between the rank processes of one communicator: Unix-domain
//! sockets in a temporary directory the unique id names. A TEST DOUBLE of NCCL's semantics for
//! machines without GPUs, never a transport of real runs (those load the real libnccl).
//!
//! It is a star: every rank but 0 connects to rank 0, which, for each collective, reads every
//! rank's buffer in rank order, combines them (a sum in rank order 0 + 1 + ..., so every run and
//! every rank gets the same bits) and sends the result back. Every read and write waits at most
//! the communicator's timeout, and a peer that closes its connection (it exited or was killed)
//! is an error at once, so a lost rank ends the collective with an error instead of a hang.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a rank waits for its peers when the environment does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Seconds a rank waits for its peers (joining, and each collective).
pub const TIMEOUT_ENV: &str = "FERRONET_EMU_NCCL_TIMEOUT_S";

/// Marks an id drawn by the emulation, so an id from elsewhere is refused.
const ID_PREFIX: &[u8] = b"ferronet-emulated-nccl:";

/// Why a collective or a join failed: NCCL's code for it and a line saying what happened.
pub struct LinkError {
    /// ncclRemoteError (a peer went away or sent something else) or ncclSystemError.
    pub remote: bool,
    pub message: String,
}

fn remote(message: String) -> LinkError {
    LinkError { remote: true, message }
}

fn system(message: String) -> LinkError {
    LinkError { remote: false, message }
}

pub fn timeout_from_env() -> Result<Duration, String> {
    match std::env::var(TIMEOUT_ENV) {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && s.is_finite())
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{TIMEOUT_ENV}={v}: give the seconds a rank waits for its peers")),
    }
}

/// A fresh unique id: the path of a new directory its communicator's sockets go in.
pub fn new_id() -> Result<[u8; 128], String> {
    static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = DRAWN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("ferronet-nccl-{}-{n}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let path = dir.to_string_lossy();
    let mut id = [0u8; 128];
    let bytes = [ID_PREFIX, path.as_bytes()].concat();
    if bytes.len() >= id.len() {
        return Err(format!("the temporary directory {path} is too long for an NCCL id; set TMPDIR to a shorter one"));
    }
    id[..bytes.len()].copy_from_slice(&bytes);
    Ok(id)
}

fn id_dir(id: &[u8; 128]) -> Option<PathBuf> {
    let rest = id.strip_prefix(ID_PREFIX)?;
    let end = rest.iter().position(|&b| b == 0)?;
    Some(PathBuf::from(std::str::from_utf8(&rest[..end]).ok()?))
}

/// What a collective does with the ranks' buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// Element-wise sum, f32 (`Sum32`) or f64, in rank order.
    Sum32,
    Sum64,
    /// Rank `root`'s buffer.
    Broadcast { root: u32 },
}

impl Combine {
    fn code(self) -> [u8; 5] {
        let (kind, root) = match self {
            Combine::Sum32 => (0, 0),
            Combine::Sum64 => (1, 0),
            Combine::Broadcast { root } => (2, root),
        };
        let r = root.to_le_bytes();
        [kind, r[0], r[1], r[2], r[3]]
    }

    /// Adds `other` into `acc` element-wise, or keeps the root's buffer.
    fn fold(self, acc: &mut [u8], rank: usize, other: &[u8]) {
        match self {
            Combine::Sum32 => {
                for (a, b) in acc.chunks_exact_mut(4).zip(other.chunks_exact(4)) {
                    let s = f32::from_le_bytes(a.try_into().unwrap()) + f32::from_le_bytes(b.try_into().unwrap());
                    a.copy_from_slice(&s.to_le_bytes());
                }
            }
            Combine::Sum64 => {
                for (a, b) in acc.chunks_exact_mut(8).zip(other.chunks_exact(8)) {
                    let s = f64::from_le_bytes(a.try_into().unwrap()) + f64::from_le_bytes(b.try_into().unwrap());
                    a.copy_from_slice(&s.to_le_bytes());
                }
            }
            Combine::Broadcast { root } if root as usize == rank => acc.copy_from_slice(other),
            Combine::Broadcast { .. } => {}
        }
    }
}

/// One rank's end of a communicator's sockets.
pub struct Link {
    pub rank: usize,
    pub world: usize,
    timeout: Duration,
    /// Rank 0: the connection of every other rank, by rank (index 0 unused). Others: rank 0's.
    peers: Vec<Option<UnixStream>>,
    /// Rank 0 removes the directory when the communicator is destroyed.
    dir: PathBuf,
}

impl Link {
    /// Joins the communicator `id` names as `rank` of `world`; waits at most `timeout` for the
    /// others, as ncclCommInitRank blocks until every rank has joined.
    pub fn join(id: &[u8; 128], rank: usize, world: usize, timeout: Duration) -> Result<Link, LinkError> {
        let dir = id_dir(id).ok_or_else(|| system("the unique id was not drawn by ncclGetUniqueId of this emulation".into()))?;
        let socket = dir.join("rank0.sock");
        let deadline = Instant::now() + timeout;
        let mut peers: Vec<Option<UnixStream>> = (0..world).map(|_| None).collect();
        if rank == 0 {
            let listener = UnixListener::bind(&socket).map_err(|e| system(format!("listening on {}: {e}", socket.display())))?;
            listener.set_nonblocking(true).map_err(|e| system(e.to_string()))?;
            while peers.iter().skip(1).any(Option::is_none) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).map_err(|e| system(e.to_string()))?;
                        set_timeouts(&stream, timeout)?;
                        let mut who = [0u8; 4];
                        stream.read_exact(&mut who).map_err(|e| remote(format!("a joining rank sent no rank: {e}")))?;
                        let who = u32::from_le_bytes(who) as usize;
                        match peers.get_mut(who) {
                            Some(slot @ None) if who != 0 => *slot = Some(stream),
                            _ => return Err(remote(format!("a second rank {who} joined a communicator of {world}"))),
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let missing = peers.iter().enumerate().skip(1).filter(|(_, p)| p.is_none()).count();
                        return Err(remote(format!("{missing} of {world} ranks did not join within {} s", timeout.as_secs_f64())));
                    }
                    Err(e) => return Err(system(format!("accepting a rank on {}: {e}", socket.display()))),
                }
            }
        } else {
            // Rank 0 may not listen yet: retry until the deadline.
            let mut stream = loop {
                match UnixStream::connect(&socket) {
                    Ok(stream) => break stream,
                    Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => return Err(remote(format!("rank 0 did not open {} within {} s: {e}", socket.display(), timeout.as_secs_f64()))),
                }
            };
            set_timeouts(&stream, timeout)?;
            stream.write_all(&(rank as u32).to_le_bytes()).map_err(|e| remote(format!("greeting rank 0: {e}")))?;
            peers[0] = Some(stream);
        }
        Ok(Link { rank, world, timeout, peers, dir })
    }

    /// Runs collective number `seq` on this rank's `buffer` (its input, replaced by the result).
    pub fn collective(&mut self, seq: u64, combine: Combine, buffer: &mut [u8]) -> Result<(), LinkError> {
        let header = [&seq.to_le_bytes()[..], &combine.code(), &(buffer.len() as u64).to_le_bytes()].concat();
        let result = if self.rank == 0 { self.gather_combine_scatter(&header, combine, buffer) } else { self.exchange_with_root(&header, buffer) };
        if result.is_err() {
            // The others learn at once (their reads see the connection close) instead of waiting
            // out their timeouts.
            self.peers.clear();
        }
        result
    }

    fn exchange_with_root(&mut self, header: &[u8], buffer: &mut [u8]) -> Result<(), LinkError> {
        let timeout = self.timeout;
        let root = self.peers.first_mut().and_then(Option::as_mut).ok_or_else(|| remote("rank 0's connection is closed".into()))?;
        root.write_all(header).and_then(|()| root.write_all(buffer)).map_err(|e| lost(0, timeout, e))?;
        let mut status = [0u8];
        root.read_exact(&mut status).map_err(|e| lost(0, timeout, e))?;
        if status[0] != 0 {
            return Err(remote("the ranks called different collectives (NCCL needs every rank to call the same ones in the same order)".into()));
        }
        root.read_exact(buffer).map_err(|e| lost(0, timeout, e))
    }

    fn gather_combine_scatter(&mut self, header: &[u8], combine: Combine, buffer: &mut [u8]) -> Result<(), LinkError> {
        let timeout = self.timeout;
        let mut result = buffer.to_vec();
        let mut theirs = vec![0u8; buffer.len()];
        let mut mismatch = false;
        for (rank, peer) in self.peers.iter_mut().enumerate().skip(1) {
            let peer = peer.as_mut().ok_or_else(|| remote(format!("rank {rank}'s connection is closed")))?;
            let mut their_header = vec![0u8; header.len()];
            peer.read_exact(&mut their_header).map_err(|e| lost(rank, timeout, e))?;
            mismatch |= their_header != header;
            if !mismatch {
                peer.read_exact(&mut theirs).map_err(|e| lost(rank, timeout, e))?;
                combine.fold(&mut result, rank, &theirs);
            }
        }
        if mismatch {
            for peer in self.peers.iter_mut().flatten() {
                let _ = peer.write_all(&[1]);
            }
            return Err(remote("the ranks called different collectives (NCCL needs every rank to call the same ones in the same order)".into()));
        }
        for (rank, peer) in self.peers.iter_mut().enumerate().skip(1) {
            let peer = peer.as_mut().expect("every peer was read above");
            peer.write_all(&[0]).and_then(|()| peer.write_all(&result)).map_err(|e| lost(rank, timeout, e))?;
        }
        buffer.copy_from_slice(&result);
        Ok(())
    }
}

fn set_timeouts(stream: &UnixStream, timeout: Duration) -> Result<(), LinkError> {
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| system(format!("setting a socket timeout: {e}")))
}

/// The error of a read or write to `rank` that failed: it went away or did not answer in time.
fn lost(rank: usize, timeout: Duration, e: std::io::Error) -> LinkError {
    let what = match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!("did not answer within {} s", timeout.as_secs_f64()),
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
            "closed its connection (it exited or was killed)".to_string()
        }
        _ => format!("failed: {e}"),
    };
    remote(format!("rank {rank} {what}"))
}

impl Drop for Link {
    fn drop(&mut self) {
        if self.rank == 0 {
            let _ = std::fs::remove_file(self.dir.join("rank0.sock"));
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}
