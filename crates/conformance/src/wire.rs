//! The runner's protocol on stdin and stdout: each message is its length, a big-endian `u32`,
//! then its protobuf bytes; and the PEMs it sends, as files.

use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The next message, or `None` at the end of the input.
///
/// # Errors
/// The input ends inside a message, or the bytes are not a `M`.
pub async fn read<M: Message + Default>(
    input: &mut (impl AsyncRead + Unpin),
) -> anyhow::Result<Option<M>> {
    let mut size = [0; 4];
    match input.read_exact(&mut size).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err.into()),
    }
    let mut bytes = vec![0; u32::from_be_bytes(size) as usize];
    input.read_exact(&mut bytes).await?;
    Ok(Some(M::decode(bytes.as_slice())?))
}

/// Writes `message` and flushes it.
///
/// # Errors
/// The output is closed, or the message is over 4 GiB.
pub async fn write(
    output: &mut (impl AsyncWrite + Unpin),
    message: &impl Message,
) -> anyhow::Result<()> {
    let bytes = message.encode_to_vec();
    output
        .write_all(&u32::try_from(bytes.len())?.to_be_bytes())
        .await?;
    output.write_all(&bytes).await?;
    output.flush().await?;
    Ok(())
}

/// Writes the runner's PEM `bytes` (a certificate or a key) to `dir/name`, for the runtime's
/// TLS, which loads files.
///
/// # Errors
/// `dir` cannot be created or the file written.
pub fn pem_file(
    dir: &std::path::Path,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
