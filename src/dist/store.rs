//! A client of PyTorch's TCPStore (c10d), the key-value store torchrun's agent serves at
//! MASTER_ADDR:MASTER_PORT: just what handing NCCL's id over needs, SET on rank 0 and WAIT then
//! GET on the others, in the store's wire protocol (torch/csrc/distributed/c10d/TCPStore.cpp:
//! a query byte, then strings and byte vectors as a native-endian u64 length and the bytes).

use super::rendezvous::{connect_retrying, failed, Master};
use crate::error::Result;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The store's query codes (its `QueryType`).
const VALIDATE: u8 = 0;
const SET: u8 = 1;
const GET: u8 = 3;
const WAIT: u8 = 6;
/// What a client sends after VALIDATE, so the server knows it speaks the protocol.
const VALIDATION_MAGIC: u32 = 0x3C85_F7CE;
/// The server's answer to WAIT once the keys exist (`WaitResponseType::STOP_WAITING`).
const STOP_WAITING: u8 = 0;

/// A validated connection to the store, retried until `timeout`.
fn connect(master: &Master, timeout: Duration) -> Result<TcpStream> {
    let validate = |mut stream: TcpStream| {
        stream.set_nodelay(true)?;
        let mut hello = vec![VALIDATE];
        hello.extend(VALIDATION_MAGIC.to_ne_bytes());
        stream.write_all(&hello)?;
        Ok(stream)
    };
    connect_retrying(master, timeout, validate, |endpoint| format!("torchrun's store on {endpoint} did not answer"))
}

fn with_bytes(message: &mut Vec<u8>, bytes: &[u8]) {
    message.extend((bytes.len() as u64).to_ne_bytes());
    message.extend(bytes);
}

fn lost(master: &Master, e: std::io::Error) -> crate::error::Error {
    failed(format!("torchrun's store on {}:{} failed: {e}", master.addr, master.port))
}

/// Sets `key` to `value` (the store sends no answer to SET).
pub fn set(master: &Master, key: &str, value: &[u8], timeout: Duration) -> Result<()> {
    let mut stream = connect(master, timeout)?;
    let mut message = vec![SET];
    with_bytes(&mut message, key.as_bytes());
    with_bytes(&mut message, value);
    stream.write_all(&message).and_then(|()| stream.flush()).map_err(|e| lost(master, e))
}

/// Waits (at most `timeout`) until `key` exists, then reads its value.
pub fn wait_and_get(master: &Master, key: &str, timeout: Duration) -> Result<Vec<u8>> {
    let mut stream = connect(master, timeout)?;
    let mut message = vec![WAIT];
    message.extend(1u64.to_ne_bytes());
    with_bytes(&mut message, key.as_bytes());
    stream.write_all(&message).map_err(|e| lost(master, e))?;
    let mut answer = [0u8];
    stream.read_exact(&mut answer).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => failed(format!(
            "rank 0 did not put NCCL's id in torchrun's store within {} s (it failed or is slow to start); raise --collective-timeout if it is slow",
            timeout.as_secs()
        )),
        _ => lost(master, e),
    })?;
    if answer[0] != STOP_WAITING {
        return Err(failed(format!("torchrun's store answered WAIT with {}", answer[0])));
    }
    let mut message = vec![GET];
    with_bytes(&mut message, key.as_bytes());
    stream.write_all(&message).map_err(|e| lost(master, e))?;
    let mut len = [0u8; 8];
    stream.read_exact(&mut len).map_err(|e| lost(master, e))?;
    let len = u64::from_ne_bytes(len);
    if len > 1 << 20 {
        return Err(failed(format!("torchrun's store holds {len} bytes under {key}, not NCCL's id")));
    }
    let mut value = vec![0u8; len as usize];
    stream.read_exact(&mut value).map_err(|e| lost(master, e))?;
    Ok(value)
}
