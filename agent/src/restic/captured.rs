//! Output captured from the real restic 0.14.0 (Debian, go1.19.8, linux/amd64) and, where
//! named, 0.18.0 (Debian trixie), verbatim,
//! for unit tests. Each sample says how it was produced; the password came from
//! `RESTIC_PASSWORD`.

/// `restic version`.
pub const VERSION: &str = "restic 0.14.0 compiled with go1.19.8 on linux/amd64\n";

/// stdout of `restic -r repo backup --json data` (data: 4 files in 2 directories).
pub const BACKUP_STDOUT: &str = r#"{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":7}
{"message_type":"summary","files_new":4,"files_changed":0,"files_unmodified":0,"dirs_new":2,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":4,"tree_blobs":3,"data_added":2083,"total_files_processed":4,"total_bytes_processed":23,"total_duration":0.216593633,"snapshot_id":"bdda295f"}
"#;

/// stdout of `restic -r repo backup --json data /proc/self/mem` (exit code 3): reading
/// `/proc/self/mem` at offset 0 fails with EIO, even for root.
pub const PARTIAL_STDOUT: &str = r#"{"message_type":"status","percent_done":0,"total_files":1,"total_bytes":9}
{"message_type":"summary","files_new":5,"files_changed":0,"files_unmodified":0,"dirs_new":4,"dirs_changed":0,"dirs_unmodified":0,"data_blobs":0,"tree_blobs":3,"data_added":1047,"total_files_processed":5,"total_bytes_processed":30,"total_duration":0.225959805,"snapshot_id":"f0a81a1d"}
"#;

/// stderr of the same run: 0.14 prints `error` lines on stderr.
pub const PARTIAL_STDERR: &str = r#"{"message_type":"error","error":{"Op":"read","Path":"/proc/self/mem","Err":5},"during":"archival","item":"/proc/self/mem"}
Warning: at least one source file could not be read
"#;

/// Output of `sleep 1000 | restic backup --stdin --json` (stdout and stderr together)
/// after `sleep` was killed: restic's "no estimate" is 2^63, and this error marshals to
/// `{}`.
pub const STDIN_INTERRUPTED: &str = r#"{"message_type":"status","percent_done":0,"total_files":1}
{"message_type":"status","seconds_elapsed":1,"seconds_remaining":9223372036854775808,"percent_done":0,"total_files":1,"current_files":["/stdin"]}
{"message_type":"status","seconds_elapsed":11,"seconds_remaining":9223372036854775808,"percent_done":0,"total_files":1}
{"message_type":"error","error":{"Op":"read","Path":"/stdin","Err":{}},"during":"archival","item":"/stdin"}
Fatal: unable to save snapshot: snapshot is empty
"#;

/// stdout of `restic forget --keep-last 1 --prune --json` after 3 backups: the JSON array
/// on one line, then prune's text.
pub const FORGET_PRUNE_STDOUT: &str = r#"[{"tags":null,"host":"vm","paths":["/tmp/rx/data"],"keep":[{"time":"2026-11-22T08:20:49.289700465Z","parent":"481bd44e2c7c9f001be32ef2591cae6229bda2fcabd03854a7235ced557a4e79","tree":"dc57d38a58863e1e9d0d8be024e6b69a77988436d452ead7c70da779295e5360","paths":["/tmp/rx/data"],"hostname":"vm","username":"root","tags":["t1"],"id":"4af78ca82f6be4ff5ba1e41fed3926a29feaa1b200e5cb848e592d1d3acd42e8","short_id":"4af78ca8"}],"remove":[{"time":"2026-11-22T08:20:48.634556875Z","parent":"bdda295f720686d44a195094995d61d0f7557f71875c5787624478db1353e308","tree":"e2b31278603ef7e3758714a7f54e8831f7a3877ff581cf0ebcdd216df2b2b59d","paths":["/tmp/rx/data"],"hostname":"vm","username":"root","id":"481bd44e2c7c9f001be32ef2591cae6229bda2fcabd03854a7235ced557a4e79","short_id":"481bd44e"},{"time":"2026-11-22T08:20:44.753842995Z","tree":"e5f962b8e367d90d293ff7056b4010fb79b4cf312b1856eae2941f473e406c80","paths":["/tmp/rx/data"],"hostname":"vm","username":"root","id":"bdda295f720686d44a195094995d61d0f7557f71875c5787624478db1353e308","short_id":"bdda295f"}],"reasons":[{"snapshot":{"time":"2026-11-22T08:20:49.289700465Z","parent":"481bd44e2c7c9f001be32ef2591cae6229bda2fcabd03854a7235ced557a4e79","tree":"dc57d38a58863e1e9d0d8be024e6b69a77988436d452ead7c70da779295e5360","paths":["/tmp/rx/data"],"hostname":"vm","username":"root","tags":["t1"]},"matches":["last snapshot"],"counters":{}}]}]
loading indexes...
loading all snapshots...
finding data that is still in use for 1 snapshots
[0:00] 100.00%  1 / 1 snapshots

searching used packs...
collecting packs for deletion and repacking
[0:00] 100.00%  6 / 6 packs processed


to repack:             7 blobs / 1.430 KiB
this removes:          3 blobs / 717 B
to delete:             2 blobs / 735 B
total prune:           5 blobs / 1.418 KiB
remaining:             8 blobs / 1.221 KiB
unused size after prune: 0 B (0.00% of remaining size)

repacking packs
[0:00] 100.00%  2 / 2 packs repacked

rebuilding index
[0:00] 100.00%  5 / 5 packs processed

deleting obsolete index files
removing 3 old packs
done
"#;

/// stdout of `restic forget --json --tag policy:A --group-by host,paths --keep-last 1`
/// after 3 backups tagged `policy:A` (and `task:A1`..`task:A3`) and 2 tagged `policy:B`, all
/// of the same host and path: only policy A's group, its two oldest removed (no `--prune`,
/// so no prune text). policy B's snapshots stay.
pub const FORGET_POLICY_STDOUT: &str = r#"[{"tags":null,"host":"vm","paths":["/tmp/rx2/data"],"keep":[{"time":"2026-12-03T22:04:26.307985433Z","parent":"35f165f2fd684d3863bce8bf54cfbf1f03b3f68e9ae6170554c59318aa81d834","tree":"8ac2932ebbc83c336573d646692e57ffc4a864757f4c65ceaee173aecad1e455","paths":["/tmp/rx2/data"],"hostname":"vm","username":"root","tags":["policy:A","task:A3"],"id":"1e39d575b8387fd7c49cb01aa35dc7d4399e53eedec7a00a3c848eba20b9eacb","short_id":"1e39d575"}],"remove":[{"time":"2026-12-03T22:04:25.584611359Z","parent":"1f09f8c6a06e6f4879bbc806f9ed1741d297c1ab588db0b2875fa214525636d8","tree":"485479698dde38ea6e43cdcdf8ab75ad0c6e015fdd12d904d37a809854228bb9","paths":["/tmp/rx2/data"],"hostname":"vm","username":"root","tags":["policy:A","task:A2"],"id":"35f165f2fd684d3863bce8bf54cfbf1f03b3f68e9ae6170554c59318aa81d834","short_id":"35f165f2"},{"time":"2026-12-03T22:04:24.838564603Z","tree":"485479698dde38ea6e43cdcdf8ab75ad0c6e015fdd12d904d37a809854228bb9","paths":["/tmp/rx2/data"],"hostname":"vm","username":"root","tags":["policy:A","task:A1"],"id":"1f09f8c6a06e6f4879bbc806f9ed1741d297c1ab588db0b2875fa214525636d8","short_id":"1f09f8c6"}],"reasons":[{"snapshot":{"time":"2026-12-03T22:04:26.307985433Z","parent":"35f165f2fd684d3863bce8bf54cfbf1f03b3f68e9ae6170554c59318aa81d834","tree":"8ac2932ebbc83c336573d646692e57ffc4a864757f4c65ceaee173aecad1e455","paths":["/tmp/rx2/data"],"hostname":"vm","username":"root","tags":["policy:A","task:A3"]},"matches":["last snapshot"],"counters":{}}]}]
"#;

/// stdout of the same command with `--keep-last 3` right after it: one snapshot kept,
/// `remove` null.
pub const FORGET_POLICY_NOTHING_STDOUT: &str = r#"[{"tags":null,"host":"vm","paths":["/tmp/rx2/data"],"keep":[{"time":"2026-12-03T22:04:26.307985433Z","parent":"35f165f2fd684d3863bce8bf54cfbf1f03b3f68e9ae6170554c59318aa81d834","tree":"8ac2932ebbc83c336573d646692e57ffc4a864757f4c65ceaee173aecad1e455","paths":["/tmp/rx2/data"],"hostname":"vm","username":"root","tags":["policy:A","task:A3"],"id":"1e39d575b8387fd7c49cb01aa35dc7d4399e53eedec7a00a3c848eba20b9eacb","short_id":"1e39d575"}],"remove":null,"reasons":[{"snapshot":{"time":"2026-12-03T22:04:26.307985433Z","parent":"35f165f2fd684d3863bce8bf54cfbf1f03b3f68e9ae6170554c59318aa81d834","tree":"8ac2932ebbc83c336573d646692e57ffc4a864757f4c65ceaee173aecad1e455","paths":["/tmp/rx2/data"],"hostname":"vm","username":"root","tags":["policy:A","task:A3"]},"matches":["last snapshot"],"counters":{"last":2}}]}]
"#;

/// stdout of `restic forget --json --tag policy:C ...` when no snapshot carries the tag (or
/// the repository has none, with or without `--prune`): nothing at all, exit code 0.
pub const FORGET_NO_MATCH_STDOUT: &str = "";

/// stdout of `restic forget --keep-last 1 --prune --json` on a repository without
/// snapshots (prune does not run).
pub const FORGET_EMPTY_STDOUT: &str = "[]\n";

/// stdout of `restic snapshots --json` after one backup without tags (`tags` is absent).
pub const SNAPSHOTS_STDOUT: &str = r#"[{"time":"2026-11-22T08:20:44.753842995Z","tree":"e5f962b8e367d90d293ff7056b4010fb79b4cf312b1856eae2941f473e406c80","paths":["/tmp/rx/data"],"hostname":"vm","username":"root","id":"bdda295f720686d44a195094995d61d0f7557f71875c5787624478db1353e308","short_id":"bdda295f"}]
"#;

/// stderr of `restic snapshots` (or `backup`) with a wrong password; exit code 1.
pub const WRONG_PASSWORD_STDERR: &str = "Fatal: wrong password or no key found\n";

/// stderr of `restic -r /tmp/rx/nope snapshots`: no such directory; exit code 1.
pub const MISSING_REPO_STDERR: &str =
    "Fatal: unable to open config file: stat /tmp/rx/nope/config: no such file or directory
Is there a repository at the following location?
/tmp/rx/nope
";

/// stderr of `restic prune` while `restic backup --stdin` held a (shared) lock; exit code 1.
/// `forget --prune` prints the same.
pub const LOCKED_STDERR: &str = "unable to create lock in backend: repository is already locked by PID 21630 on vm by root (UID 0, GID 0)
lock was created at 2026-11-22 08:20:57 (3.155192236s ago)
storage ID c280f4c3
the `unlock` command can be used to remove stale locks
";

/// stderr of `restic -r rest:http://127.0.0.1:9/ snapshots` (nothing listens); exit code 1.
/// Note the missing-repository hint restic adds to a network failure.
pub const REST_UNREACHABLE_STDERR: &str = r#"Fatal: unable to open config file: client.Head: Head "http://127.0.0.1:9/config": dial tcp 127.0.0.1:9: connect: connection refused
Is there a repository at the following location?
rest:http://127.0.0.1:9/
"#;

/// stderr of `restic -r sftp:nosuchhost.invalid:/x snapshots`; exit code 1.
pub const SFTP_UNRESOLVABLE_STDERR: &str = "subprocess ssh: ssh: Could not resolve hostname nosuchhost.invalid: Name or service not known
Fatal: unable to open repository at sftp:nosuchhost.invalid:/x: unable to start the sftp session, error: EOF
";

/// stdout of restic 0.18.0 (Debian trixie) `snapshots --json`, the last snapshot only: from
/// 0.17 on, each snapshot carries its backup's `summary`.
pub const SNAPSHOTS_0_18_STDOUT: &str = r#"[{"time":"2026-12-03T23:57:39.189982592Z","parent":"f58a31695d71fdeea16dc2613df111c9c470d5207cbed7cd6498e7918f0d2161","tree":"fd616dc47ef34aad50a532278c5a669df69de077b984d9de549c2b4a8fbd0625","paths":["/tmp/rz/data"],"hostname":"vm","username":"root","program_version":"restic 0.18.0","summary":{"backup_start":"2026-12-03T23:57:39.189982592Z","backup_end":"2026-12-03T23:57:39.86994015Z","files_new":0,"files_changed":0,"files_unmodified":2,"dirs_new":0,"dirs_changed":0,"dirs_unmodified":4,"data_blobs":0,"tree_blobs":0,"data_added":0,"data_added_packed":0,"total_files_processed":2,"total_bytes_processed":8},"id":"0ff1d3c86d806fb98e9917432a662d454cf6f72f4a5b547dc28fb842398ef3fb","short_id":"0ff1d3c8"}]
"#;

/// stdout of `restic ls --json <id>` (0.14) of a backup of `/tmp/rz/data` holding `a.txt`
/// (6 bytes), `link` (a symlink to it) and `sub/b.txt` (2 bytes): the snapshot first, then
/// every node from the root down.
pub const LS_STDOUT: &str = r#"{"time":"2026-12-03T23:57:36.302355553Z","tree":"fd616dc47ef34aad50a532278c5a669df69de077b984d9de549c2b4a8fbd0625","paths":["/tmp/rz/data"],"hostname":"vm","username":"root","id":"f58a31695d71fdeea16dc2613df111c9c470d5207cbed7cd6498e7918f0d2161","short_id":"f58a3169","struct_type":"snapshot"}
{"name":"tmp","type":"dir","path":"/tmp","uid":0,"gid":0,"mode":2148532735,"permissions":"dtrwxrwxrwx","mtime":"2026-12-03T23:57:36.93300763Z","atime":"2026-12-03T23:57:36.93300763Z","ctime":"2026-12-03T23:57:36.93300763Z","struct_type":"node"}
{"name":"rz","type":"dir","path":"/tmp/rz","uid":0,"gid":0,"mode":2147484141,"permissions":"drwxr-xr-x","mtime":"2026-12-03T23:57:34.193007759Z","atime":"2026-12-03T23:57:34.193007759Z","ctime":"2026-12-03T23:57:34.193007759Z","struct_type":"node"}
{"name":"data","type":"dir","path":"/tmp/rz/data","uid":0,"gid":0,"mode":2147484141,"permissions":"drwxr-xr-x","mtime":"2026-12-03T23:57:36.28500766Z","atime":"2026-12-03T23:57:36.28500766Z","ctime":"2026-12-03T23:57:36.28500766Z","struct_type":"node"}
{"name":"a.txt","type":"file","path":"/tmp/rz/data/a.txt","uid":0,"gid":0,"size":6,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-12-03T23:57:36.28500766Z","atime":"2026-12-03T23:57:36.28500766Z","ctime":"2026-12-03T23:57:36.28500766Z","struct_type":"node"}
{"name":"link","type":"symlink","path":"/tmp/rz/data/link","uid":0,"gid":0,"mode":134218239,"permissions":"Lrwxrwxrwx","mtime":"2026-12-03T23:57:36.28500766Z","atime":"2026-12-03T23:57:36.28500766Z","ctime":"2026-12-03T23:57:36.28500766Z","struct_type":"node"}
{"name":"sub","type":"dir","path":"/tmp/rz/data/sub","uid":0,"gid":0,"mode":2147484141,"permissions":"drwxr-xr-x","mtime":"2026-12-03T23:57:36.28500766Z","atime":"2026-12-03T23:57:36.28500766Z","ctime":"2026-12-03T23:57:36.28500766Z","struct_type":"node"}
{"name":"b.txt","type":"file","path":"/tmp/rz/data/sub/b.txt","uid":0,"gid":0,"size":2,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-12-03T23:57:36.28500766Z","atime":"2026-12-03T23:57:36.28500766Z","ctime":"2026-12-03T23:57:36.28500766Z","struct_type":"node"}
"#;

/// A node line of restic 0.18.0's `ls --json`: `message_type` beside `struct_type`.
pub const LS_0_18_NODE: &str = r#"{"name":"a.txt","type":"file","path":"/tmp/rz/data/a.txt","uid":0,"gid":0,"size":6,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-12-03T23:57:36.28500766Z","atime":"2026-12-03T23:57:36.28500766Z","ctime":"2026-12-03T23:57:36.28500766Z","inode":10010955,"message_type":"node","struct_type":"node"}"#;

/// stderr of `restic ls --json <id>` (0.14) for an id that is not in the repository: exit
/// code 0 and nothing on stdout.
pub const LS_MISSING_STDERR: &str = "Ignoring \"abababababababababababababababababababababababababababababababab\": no matching ID found for prefix \"abababababababababababababababababababababababababababababababab\"\n";

/// stderr of `restic restore <id> --target out` (0.14) for an id that is not in the
/// repository; exit code 1.
pub const RESTORE_MISSING_STDERR: &str = "invalid id \"abababababababababababababababababababababababababababababababab\": no matching ID found for prefix \"abababababababababababababababababababababababababababababababab\"\n";

/// The last line of restic 0.18.0's stderr for `restore` (or `ls`) of a full id that is
/// not in the repository; exit code 1.
pub const RESTORE_MISSING_0_18_STDERR: &str = "Fatal: failed to find snapshot: failed to load snapshot abababab: open /tmp/rx/repo/snapshots/abababababababababababababababababababababababababababababababab: no such file or directory\n";

/// stderr of `restic restore <id> --target out` (0.14) when the pack of one file's data
/// was damaged (overwritten with random bytes); exit code 1. The other files were restored.
pub const RESTORE_ERRORS_STDERR: &str =
    "ignoring error for /tmp/ry/data/big: ciphertext verification failed
ignoring error for /tmp/ry/data/big: UtimesNano: no such file or directory
Fatal: There were 2 errors
";

/// The same restore with restic 0.18.0: the same shape, other words.
pub const RESTORE_ERRORS_0_18_STDERR: &str = "ignoring error for /tmp/ry/data/big: decrypting blob <data/ffa6e9f9> from a98822b2 failed: ciphertext verification failed
ignoring error for /tmp/ry/data/big: lchown /tmp/ry/o18/tmp/ry/data/big: no such file or directory
Fatal: There were 2 errors
";

/// restic 0.18.0 (Debian trixie) `version`.
pub const VERSION_0_18: &str = "restic 0.18.0 compiled with go1.24.4 on linux/amd64\n";

/// stderr of restic 0.18.0 `-r /tmp/x/none snapshots` (exit code 10): no repository.
pub const MISSING_REPO_0_18_STDERR: &str = "Fatal: repository does not exist: unable to open config file: stat /tmp/tmp.g3K6crHJpK/none/config: no such file or directory
Is there a repository at the following location?
/tmp/tmp.g3K6crHJpK/none
";

/// stderr of restic 0.18.0 `snapshots` with a wrong password (exit code 12).
pub const WRONG_PASSWORD_0_18_STDERR: &str = "Fatal: wrong password or no key found\n";

/// stderr of restic 0.18.0 `prune` while `sleep 1000 | restic backup --stdin` holds a
/// lock (exit code 11); with `--retry-lock 2s` the first line says "up to 2s" and the
/// exit code is the same.
pub const LOCKED_0_18_STDERR: &str = "repo already locked, waiting up to 0s for the lock
unable to create lock in backend: repository is already locked by PID 16805 on vm by root (UID 0, GID 0)
lock was created at 2026-12-04 12:36:01 (2.004521165s ago)
storage ID 72c970d5
the `unlock` command can be used to remove stale locks
";
