//! A TCP proxy on loopback that a test controls: it forwards to a target,
//! or stops answering (connections held open and silent, as a network
//! partition or a hung server leaves them), or refuses (connections closed
//! at once, as a stopped server does).

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward bytes both ways.
    Forward,
    /// Forward nothing and close nothing.
    Silent,
    /// Close every connection.
    Refuse,
}

/// A running proxy; stopped on drop.
pub struct TcpProxy {
    /// The proxy's own address.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TcpProxy {
    /// Listen on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, watch) = watch::channel(Mode::Forward);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(connection(client, target, watch.clone()));
            }
        });
        Ok(Self { addr, mode, task })
    }

    /// Change what the proxy does, for open connections and new ones.
    pub fn set(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }
}

async fn connection(client: TcpStream, target: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let now = *mode.borrow_and_update();
    match now {
        Mode::Refuse => return,
        Mode::Silent => {
            hold(client, mode).await;
            return;
        }
        Mode::Forward => {}
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let (mut client, mut server) = (client, server);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = mode.changed() => {
            if *mode.borrow() == Mode::Silent {
                drop(server);
                hold(client, mode).await;
            }
        }
    }
}

/// Keep a connection open and silent until the mode changes again.
async fn hold(client: TcpStream, mut mode: watch::Receiver<Mode>) {
    let _ = mode.changed().await;
    drop(client);
}
