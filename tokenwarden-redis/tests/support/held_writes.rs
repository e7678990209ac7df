//! A Redis stand-in (RESP2 over TCP on loopback) that holds its answer to a
//! write (`EVAL`, `EVALSHA`, `PSETEX`) until the client's next command arrived:
//! a client that waits for a write's answer before it sends the write's `WAIT`
//! gets no answer, one that sends both together gets both. A real Redis never
//! holds an answer this way; it stands for the network event that matters, a
//! reconnect between the write and its `WAIT` (which would then count nothing of
//! the write and answer at once).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The stand-in; it serves until the test ends.
pub struct HeldWrites {
    /// Its address, `redis://127.0.0.1:<port>/0`.
    pub url: String,
    /// Each command's name, in the order they arrived.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl HeldWrites {
    /// Starts serving on a port of its own.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://{}/0", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        Self { url, seen }
    }
}

/// One command: its words.
fn read_command(reader: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok().filter(|n| *n > 0)?;
    let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut word = vec![0; len + 2];
        reader.read_exact(&mut word).ok()?;
        word.truncate(len);
        words.push(word);
    }
    Some(words)
}

fn serve(stream: TcpStream, seen: &Mutex<Vec<String>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut held: Option<&'static [u8]> = None;
    while let Some(words) = read_command(&mut reader) {
        let name = String::from_utf8_lossy(&words[0]).to_uppercase();
        seen.lock().unwrap().push(name.clone());
        let answer: &[u8] = match name.as_str() {
            // The take script (the one with 5 keys) answers a fence and no
            // stored token; the save script, 1 (written).
            "EVAL" | "EVALSHA" if words.get(2).is_some_and(|keys| keys == b"5") => {
                b"*2\r\n:7\r\n$-1\r\n"
            }
            "EVAL" | "EVALSHA" => b":1\r\n",
            "PSETEX" => b"+OK\r\n",
            "WAIT" => b":1\r\n",
            _ => b"+OK\r\n",
        };
        if matches!(name.as_str(), "EVAL" | "EVALSHA" | "PSETEX") {
            held = Some(answer);
            continue;
        }
        if let Some(write) = held.take() {
            let _ = writer.write_all(write);
        }
        let _ = writer.write_all(answer);
    }
}
