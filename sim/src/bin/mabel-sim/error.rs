//! Why the simulator did not start, or `ctl` got no answer, and the exit code of each:
//! 2 for what a person must change before trying again (a bad argument, a port or a socket
//! already taken), 1 for a command the set refused or a simulator that is not there.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::command::CommandError;

#[derive(Debug)]
pub enum Error {
    Usage(String),
    Command(CommandError),
    /// A port the set would listen on is taken; the message names it.
    Listen(io::Error),
    SocketHeld(PathBuf),
    NotASocket(PathBuf),
    Socket(PathBuf, io::Error),
    NoSimulator(PathBuf, io::Error),
    /// The simulator refused the command `ctl` sent.
    Refused(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoSimulator(..) | Error::Refused(_) => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(what) => write!(f, "{what} (mabel-sim --help says more)"),
            Error::Command(error) => write!(f, "{error}"),
            Error::Listen(e) => write!(
                f,
                "cannot listen on {e}: is a mongod or another simulator using the port? \
                 (--ports chooses others)"
            ),
            Error::SocketHeld(path) => write!(
                f,
                "control socket {} is held by another running simulator \
                 (stop it with `mabel-sim ctl --control {} quit`, or choose --control)",
                path.display(),
                path.display()
            ),
            Error::NotASocket(path) => write!(
                f,
                "{} is not a socket; not replacing it (choose --control)",
                path.display()
            ),
            Error::Socket(path, e) => {
                write!(f, "cannot listen on control socket {}: {e}", path.display())
            }
            Error::NoSimulator(path, e) => write!(
                f,
                "no simulator answers on {}: {e} (start one with `make run`, or mabel-sim)",
                path.display()
            ),
            Error::Refused(why) => write!(f, "{why}"),
        }
    }
}
