//! The control socket: a Unix socket on which a running simulator takes one command per
//! connection and answers it, so that `make failover` and friends, or a second terminal, can
//! steer a set started in the background. One simulator holds a socket at a time; a socket
//! file a dead one left behind is taken over.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::error::Error;

/// How an answer that is a refusal starts, on the wire.
const REFUSED: &str = "error: ";

/// The longest command line read; a command is a few words.
const LONGEST: u64 = 1024;

/// How long a connection may take to send its command, and `ctl` to wait for the answer
/// (a step-down waits up to 5 s for a secondary to catch up).
const PATIENCE: Duration = Duration::from_secs(30);

/// The socket this simulator holds; its file goes when it is dropped.
pub struct Control {
    listener: UnixListener,
    path: PathBuf,
    released: AtomicBool,
}

impl Control {
    /// Listens on `path`, unless another running simulator does: a socket file that nothing
    /// answers on is left over from a dead one and replaced; any other file is left alone.
    pub fn claim(path: &Path) -> Result<Control, Error> {
        let held = || Error::SocketHeld(path.to_path_buf());
        let trouble = |e: io::Error| Error::Socket(path.to_path_buf(), e);
        match fs::symlink_metadata(path) {
            Ok(meta) if !meta.file_type().is_socket() => {
                return Err(Error::NotASocket(path.to_path_buf()))
            }
            Ok(_) => match UnixStream::connect(path) {
                Ok(_) => return Err(held()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    fs::remove_file(path).map_err(trouble)?
                }
                Err(e) => return Err(trouble(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(trouble(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(trouble)?;
        }
        let listener = UnixListener::bind(path).map_err(|e| match e.kind() {
            io::ErrorKind::AddrInUse => held(),
            _ => trouble(e),
        })?;
        Ok(Control {
            listener,
            path: path.to_path_buf(),
            released: AtomicBool::new(false),
        })
    }

    /// Answers each connection's command with `answer`, one connection at a time, until
    /// `answer` says to stop.
    pub fn serve(&self, mut answer: impl FnMut(&str) -> (Result<String, String>, bool)) {
        for stream in self.listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(PATIENCE));
            let mut line = String::new();
            let read = BufReader::new((&stream).take(LONGEST)).read_line(&mut line);
            if read.is_err() {
                continue;
            }
            let (reply, stop) = answer(line.trim());
            let text = match reply {
                Ok(text) => text,
                Err(refusal) => format!("{REFUSED}{refusal}"),
            };
            let _ = writeln!(stream, "{text}");
            if stop {
                return;
            }
        }
    }
}

impl Control {
    /// Removes the socket file, once: after it, the next simulator may claim the path.
    pub fn release(&self) {
        if !self.released.swap(true, Ordering::SeqCst) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.release();
    }
}

/// Sends `command` to the simulator on `path`: its answer, or its refusal as `Err`.
pub fn send(path: &Path, command: &str) -> Result<Result<String, String>, Error> {
    let gone = |e: io::Error| Error::NoSimulator(path.to_path_buf(), e);
    let mut stream = UnixStream::connect(path).map_err(gone)?;
    stream.set_read_timeout(Some(PATIENCE)).map_err(gone)?;
    writeln!(stream, "{command}").map_err(gone)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(gone)?;
    let answer = answer.trim_end().to_string();
    Ok(match answer.strip_prefix(REFUSED) {
        Some(refusal) => Err(refusal.to_string()),
        None => Ok(answer),
    })
}
