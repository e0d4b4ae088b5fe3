//! A TCP proxy in front of a server, so a test can cut every live
//! connection at once — what a network failure or a broker restart looks
//! like to a client — while new connections keep working.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Forwards connections on a local port to `upstream`.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    live: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// Listens on `127.0.0.1` (a free port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let live: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let tracked = live.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let pipe = tokio::spawn(forward(client, upstream));
                lock(&tracked).push(pipe.abort_handle());
            }
        })
        .abort_handle();
        Ok(Self { addr, live, accept })
    }

    /// A proxy in front of the server of `url` (`scheme://[user@]host:port/...`),
    /// and `url` pointing at the proxy instead.
    pub async fn in_front_of(url: &str) -> io::Result<(Self, String)> {
        let (start, end) = authority(url);
        let upstream = tokio::net::lookup_host(&url[start..end])
            .await?
            .next()
            .ok_or_else(|| io::Error::other(format!("{url}: no address")))?;
        let proxy = Self::start(upstream).await?;
        let url = format!("{}{}{}", &url[..start], proxy.addr, &url[end..]);
        Ok((proxy, url))
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resets every connection open now, on both sides. Later connections
    /// are forwarded as before.
    pub fn sever(&self) {
        for pipe in lock(&self.live).drain(..) {
            pipe.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.sever();
    }
}

/// Where `host:port` sits in `url`.
fn authority(url: &str) -> (usize, usize) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    let host = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (host, end)
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Zero linger: dropping the sockets (on sever) sends a reset, as a
    // crashed peer or a broken network would, rather than a clean close.
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
