//! TLS servers for tests: a CA, a server certificate and a client certificate made at test
//! time with the `openssl` command-line tool, and a `redis-server` with a TLS port.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::server::free_port;
use crate::{HarnessError, RedisServer};

/// A throwaway PKI: a CA, a server certificate for `127.0.0.1` and `localhost`, and a
/// client certificate, all signed by the CA and valid for two days. Removed on drop.
#[derive(Debug)]
pub struct TestCerts {
    dir: TempDir,
}

impl TestCerts {
    /// Makes the CA and the certificates (P-256 keys, so this takes a few milliseconds).
    ///
    /// # Errors
    ///
    /// [`HarnessError::Tool`] when `openssl` is missing or fails.
    pub fn generate() -> Result<TestCerts, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("lock-tests-tls-")
            .tempdir()
            .map_err(HarnessError::TempDir)?;
        let d = dir.path();
        fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .map_err(HarnessError::TempDir)?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            d,
            &["req", "-x509"],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=lock-tests CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )?;
        for name in ["server", "client"] {
            let (key, csr, crt) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.crt"),
            );
            openssl(
                d,
                &["req"],
                &ec,
                &[
                    "-keyout",
                    &key,
                    "-out",
                    &csr,
                    "-subj",
                    &format!("/CN=lock-tests {name}"),
                ],
            )?;
            openssl(
                d,
                &["x509", "-req"],
                &[],
                &[
                    "-in",
                    &csr,
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &crt,
                    "-days",
                    "2",
                    "-extfile",
                    "ext.cnf",
                ],
            )?;
        }
        Ok(TestCerts { dir })
    }

    /// The directory holding `ca.crt`, `server.crt`, `server.key`, `client.crt` and
    /// `client.key`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The path of one of the files.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    fn read(&self, file: &str) -> Vec<u8> {
        fs::read(self.path(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.read("ca.crt")
    }

    /// The client certificate, PEM.
    pub fn client_cert_pem(&self) -> Vec<u8> {
        self.read("client.crt")
    }

    /// The client's private key, PEM (PKCS#8).
    pub fn client_key_pem(&self) -> Vec<u8> {
        self.read("client.key")
    }
}

fn openssl(dir: &Path, head: &[&str], key: &[&str], tail: &[&str]) -> Result<(), HarnessError> {
    let tool = |detail: String| HarnessError::Tool {
        program: "openssl",
        package: "openssl",
        detail,
    };
    let out = Command::new("openssl")
        .args(head)
        .args(key)
        .args(tail)
        .current_dir(dir)
        .output()
        .map_err(|e| tool(e.to_string()))?;
    if !out.status.success() {
        return Err(tool(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// A `redis-server` with a TLS port, its certificates made by [`TestCerts`].
///
/// The plain port stays open on loopback for the harness's own probes and for raw access
/// from tests; the client under test uses [`url`](Self::url), which is TLS only.
///
/// ```
/// let tls = lock_tests::TlsServer::start()?;
/// assert!(tls.url().starts_with("rediss://127.0.0.1:"));
/// # Ok::<(), lock_tests::HarnessError>(())
/// ```
#[derive(Debug)]
pub struct TlsServer {
    /// The server; its plain port is for the harness and raw access.
    pub server: RedisServer,
    /// The CA, server and client certificates.
    pub certs: TestCerts,
    tls_port: u16,
}

impl TlsServer {
    /// A TLS server that does not ask for client certificates.
    ///
    /// # Errors
    ///
    /// As for [`TestCerts::generate`] and [`RedisServer::start`].
    pub fn start() -> Result<TlsServer, HarnessError> {
        TlsServer::start_with(false)
    }

    /// A TLS server that requires a client certificate signed by its CA (mutual TLS).
    ///
    /// # Errors
    ///
    /// As for [`start`](Self::start).
    pub fn start_mtls() -> Result<TlsServer, HarnessError> {
        TlsServer::start_with(true)
    }

    fn start_with(mutual: bool) -> Result<TlsServer, HarnessError> {
        let certs = TestCerts::generate()?;
        let tls_port = free_port()?;
        let server = RedisServer::builder()
            .arg("--tls-port")
            .arg(tls_port.to_string())
            .arg("--tls-cert-file")
            .arg(certs.path("server.crt"))
            .arg("--tls-key-file")
            .arg(certs.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(certs.path("ca.crt"))
            .args(["--tls-auth-clients", if mutual { "yes" } else { "no" }])
            .start()?;
        Ok(TlsServer {
            server,
            certs,
            tls_port,
        })
    }

    /// The TLS port, on 127.0.0.1.
    pub fn tls_port(&self) -> u16 {
        self.tls_port
    }

    /// `rediss://127.0.0.1:PORT/`: the server certificate is valid for this address.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.tls_port)
    }
}
