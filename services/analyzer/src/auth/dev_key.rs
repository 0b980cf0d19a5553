//! The development signing secret, kept in the data directory.

use std::path::Path;

use secrecy::SecretString;

use super::KeyConfigError;

/// The development signing secret: read from the data dir, or created there
/// (owner-only permissions) on first start.
pub(super) fn dev_secret(data_dir: &Path) -> Result<SecretString, KeyConfigError> {
    use base64::Engine as _;
    let path = data_dir.join("dev-jwt-secret");
    let err = |message: String| KeyConfigError::DevKey {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(SecretString::from(s.trim().to_owned())),
        Ok(_) => return Err(err("too short; delete it to generate a new one".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e.to_string())),
    }
    std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
    let bytes: [u8; 32] = rand::random();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    write_private(&path, &secret).map_err(|e| err(e.to_string()))?;
    Ok(SecretString::from(secret))
}

#[cfg(unix)]
pub(super) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
pub(super) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}
