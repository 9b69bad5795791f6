//! `mabel-sim`: the simulated replica set as a program, for a person to run mabel against
//! without Docker and watch a failover happen by itself, as on mongod's timers. It prints a
//! line for each thing that happens to the set, takes commands on stdin and on a control
//! socket, and `mabel-sim ctl` sends it one. See `mabel-sim --help`.
//!
//! Only std and the library: one thread prints the events, one reads stdin, one serves the
//! control socket, and the main thread waits for `quit`.

mod cli;
mod command;
mod control;
mod error;
mod lines;

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::SystemTime;

use mabel_sim::{ReplicaSet, Timers};

use cli::{Args, Options};
use command::Command;
use control::Control;
use error::Error;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match cli::parse(&args) {
        Ok(Args::Help) => {
            say(&cli::usage());
            Ok(())
        }
        Ok(Args::Simulate(options)) => simulate(&options),
        Ok(Args::Ctl { control, line }) => ctl(&control, &line),
        Ok(Args::Stamp { label }) => {
            stamp(&label);
            Ok(())
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mabel-sim: {error}");
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

/// Runs the set until `quit`, on stdin or the control socket.
fn simulate(options: &Options) -> Result<(), Error> {
    let control = Arc::new(Control::claim(&options.control)?);
    let timers = Timers::with_election_timeout(options.election_timeout);
    let set = ReplicaSet::listen(&options.ports, &options.set, timers).map_err(Error::Listen)?;
    let set = Arc::new(set);
    let events = set.subscribe();
    for line in lines::banner(options, &set) {
        say(&line);
    }
    say(&Command::Status.run(&set).unwrap_or_default());

    let hosts = set.hosts();
    thread::spawn(move || {
        for event in events {
            say(&lines::event(&event, &hosts));
        }
    });
    let (quit, quitting) = mpsc::channel();
    {
        let (set, quit) = (Arc::clone(&set), quit.clone());
        thread::spawn(move || read_stdin(&set, &quit));
    }
    {
        let control = Arc::clone(&control);
        thread::spawn(move || {
            control.serve(|line| {
                let (answer, stop) = answer(&set, line);
                if stop {
                    let _ = quit.send(());
                }
                (answer, stop)
            })
        });
    }
    let _ = quitting.recv();
    // The threads end with the process; the socket file must not outlive it.
    control.release();
    Ok(())
}

/// Commands typed on stdin: answers on stdout, refusals on stderr. At the end of input the
/// set goes on, steered through the socket (as when `make run` starts it in the background).
fn read_stdin(set: &ReplicaSet, quit: &mpsc::Sender<()>) {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        match answer(set, &line) {
            (Ok(text), stop) => {
                say(&text);
                if stop {
                    let _ = quit.send(());
                    return;
                }
            }
            (Err(refusal), _) => eprintln!("mabel-sim: {refusal}"),
        }
    }
}

/// One command line's answer or refusal, and whether the set is to stop.
fn answer(set: &ReplicaSet, line: &str) -> (Result<String, String>, bool) {
    match Command::parse(line) {
        Ok(command) => (
            command.run(set).map_err(|r| r.to_string()),
            command == Command::Quit,
        ),
        Err(error) => (Err(error.to_string()), false),
    }
}

/// `mabel-sim ctl`: one command to the simulator on `control`, and its answer.
fn ctl(control: &std::path::Path, line: &str) -> Result<(), Error> {
    match control::send(control, line)? {
        Ok(answer) => {
            say(&answer);
            Ok(())
        }
        Err(refusal) => Err(Error::Refused(refusal)),
    }
}

/// `mabel-sim stamp LABEL`: each line of stdin, as it arrives, after its time and the label.
/// A line that starts with its own time (mabel's warnings) keeps it, since it is the truer.
fn stamp(label: &str) {
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        let stamped = match lines::leading_time(&line) {
            Some((time, rest)) => format!("{time} {label:<5} {rest}"),
            None => lines::labelled(SystemTime::now(), label, &line),
        };
        say(&stamped);
    }
}

/// Prints a line on stdout; a closed stdout (`| head`) is no reason to panic.
fn say(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
}
