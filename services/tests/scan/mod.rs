//! The scenario's last check: no secret is stored where it must not be. Every message of
//! every stream on the server (payload and headers) and every byte of the read models'
//! files on disk are searched for each secret.

use std::path::Path;

use futures::StreamExt;

/// Panics, naming the place, when a secret (name, text) is in a stream of the server at
/// `url` or in a file under one of `dirs`; and when `known`, a text that is stored in
/// both (so the scan reads what it should), is found in neither. Returns how many
/// messages and files were read.
pub fn assert_no_secret_stored(
    url: &str,
    dirs: &[&Path],
    secrets: &[(&str, &str)],
    known: &str,
) -> (u64, u64) {
    for (name, text) in secrets {
        assert!(text.len() >= 16, "{name} is too short to search for");
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (messages, in_streams) = runtime.block_on(scan_streams(url, secrets, known));
    let (mut files, mut in_files) = (0, false);
    for dir in dirs {
        let (read, found) = scan_files(dir, secrets, known);
        files += read;
        in_files |= found;
    }
    assert!(
        in_streams && in_files,
        "{known:?} is stored in both; the scan found it in streams: {in_streams}, files: {in_files}"
    );
    (messages, files)
}

async fn scan_streams(url: &str, secrets: &[(&str, &str)], known: &str) -> (u64, bool) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut names = js.stream_names();
    let (mut read, mut found) = (0, false);
    while let Some(name) = names.next().await {
        let name = name.expect("stream name");
        let stream = js.get_stream(&name).await.expect("stream");
        let state = stream.cached_info().state.clone();
        for seq in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.get_raw_message(seq).await else {
                continue; // deleted or expired
            };
            read += 1;
            found |= contains(&message.payload, known.as_bytes());
            let headers = format!("{:?}", message.headers);
            for (secret, text) in secrets {
                assert!(
                    !contains(&message.payload, text.as_bytes()) && !headers.contains(text),
                    "{name} message {seq} holds the {secret}"
                );
            }
        }
    }
    (read, found)
}

fn scan_files(dir: &Path, secrets: &[(&str, &str)], known: &str) -> (u64, bool) {
    let (mut read, mut found) = (0, false);
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            let (more, seen) = scan_files(&path, secrets, known);
            read += more;
            found |= seen;
            continue;
        }
        let bytes = std::fs::read(&path).expect("read file");
        read += 1;
        found |= contains(&bytes, known.as_bytes());
        for (secret, text) in secrets {
            assert!(
                !contains(&bytes, text.as_bytes()),
                "{} holds the {secret}",
                path.display()
            );
        }
    }
    (read, found)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
