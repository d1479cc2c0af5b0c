//! The rest of TensorFlow's filesystem for hdfs:// and viewfs:// (../tf_bridge.cc): metadata, directories,
//! rename and writable files, on hdfs-native's client. Reads go through lib.rs's open / read / close.
//!
//! A file TF opens for writing is written beside its target under a hidden temporary name and renamed over it
//! (HDFS rename with OVERWRITE: one NameNode operation) when TF closes it, as object stores publish a file only
//! when it is whole; one TF drops unclosed is published too (as a local file keeps what was written), unless a
//! write or flush to it failed. So a writer killed in the middle of a Keras checkpoint or a SavedModel variable file leaves
//! the previous file as it was, and holds no lease on the target that would block the next writer until HDFS's
//! lease soft limit. Appended files are written in place (what was flushed is readable: hsync). TensorBoard event
//! files (".tfevents." in the name) are published whole at every Flush instead, so TensorBoard can follow them
//! while training writes them (see `Mode::Spooled`).
//! TFOY_HDFS_ATOMIC_WRITES=0 writes every file in place.
//!
//! Every NameNode call is bounded (TFOY_HDFS_RPC_TIMEOUT seconds, 60 by default), and a client's first use probes
//! the NameNode's address (TFOY_HDFS_CONNECT_TIMEOUT, 5 s), so a cluster that is down is named at once instead of
//! after hdfs-native's minutes of retries.

use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::future::Future;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use hdfs_native::file::FileWriter;
use hdfs_native::{Client, WriteOptions};

use crate::local::Settings;
use crate::{
    client, failure, guarded, report, split_name, state, Failure, DEADLINE_EXCEEDED, FAILED_PRECONDITION,
    INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE,
};

const WRITE_CHUNK: usize = 4 << 20; // TF appends records piece by piece: hand hdfs-native a few MiB at a time

pub(crate) fn is_hadoop_uri(name: &str) -> bool {
    name.starts_with("hdfs://") || name.starts_with("viewfs://")
}

fn seconds(var: &str, default: f64) -> Duration {
    let v = std::env::var(var).ok().and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| v.is_finite() && *v > 0.0);
    Duration::from_secs_f64(v.unwrap_or(default))
}

/// Runs one hdfs-native call on the reader's runtime, bounded by TFOY_HDFS_RPC_TIMEOUT.
pub(crate) fn run<T>(uri: &str, call: impl Future<Output = hdfs_native::Result<T>>) -> Result<T, Failure> {
    let limit = seconds("TFOY_HDFS_RPC_TIMEOUT", 60.0);
    match state().runtime.block_on(async { tokio::time::timeout(limit, call).await }) {
        Ok(result) => result.map_err(|e| failure(uri, e)),
        Err(_) => Err(Failure(
            DEADLINE_EXCEEDED,
            format!(
                "{uri}: HDFS did not answer within {:.0}s (TFOY_HDFS_RPC_TIMEOUT){}",
                limit.as_secs_f64(),
                namenodes_of(uri)
            ),
        )),
    }
}

/// " (NameNode nn1:8020, nn2:8020)": the addresses a URI's authority (or fs.defaultFS) resolves to, for a message
/// about a NameNode that accepted the connection but did not answer.
fn namenodes_of(uri: &str) -> String {
    let Some(rest) = uri.strip_prefix("hdfs://") else { return String::new() };
    let settings = crate::settings();
    let mut authority = rest.split('/').next().unwrap_or("").to_string();
    if authority.is_empty() {
        match settings.get("fs.defaultFS").and_then(|d| d.strip_prefix("hdfs://")) {
            Some(a) => authority = a.trim_end_matches('/').to_string(),
            None => return String::new(),
        }
    }
    let nns = settings.namenodes(&authority);
    if nns.is_empty() { String::new() } else { format!(" (NameNode {})", nns.join(", ")) }
}

/// "hdfs://" (fs.defaultFS) as the base it stands for, so that two spellings of one cluster compare equal.
fn resolved_base(base: &str) -> String {
    if base == "hdfs://" {
        if let Some(d) = crate::settings().get("fs.defaultFS").filter(|d| d.starts_with("hdfs://")) {
            return d.trim_end_matches('/').to_string();
        }
    }
    base.to_string()
}

/// Fails with UNAVAILABLE naming the addresses unless a NameNode of `base` ("hdfs://nn:8020", "hdfs://ns" of an
/// HA nameservice, or "hdfs://" for fs.defaultFS) accepts a TCP connection in time. viewfs mounts are resolved
/// inside hdfs-native and not probed.
pub(crate) fn probe_namenodes(settings: &Settings, base: &str) -> Result<(), Failure> {
    let mut authority = base.strip_prefix("hdfs://").unwrap_or("").to_string();
    if base == "hdfs://" {
        match settings.get("fs.defaultFS").and_then(|d| d.strip_prefix("hdfs://")) {
            Some(a) => authority = a.trim_end_matches('/').to_string(),
            None => return Ok(()),
        }
    }
    if authority.is_empty() {
        return Ok(());
    }
    let limit = seconds("TFOY_HDFS_CONNECT_TIMEOUT", 5.0);
    let mut tried = Vec::new();
    for nn in settings.namenodes(&authority) {
        let addrs = match nn.to_socket_addrs() {
            Ok(a) => a.collect::<Vec<_>>(),
            Err(e) => {
                tried.push(format!("{nn} ({e})"));
                continue;
            }
        };
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, limit) {
                Ok(_) => return Ok(()),
                Err(e) => tried.push(format!("{nn} ({e})")),
            }
        }
    }
    if tried.is_empty() {
        return Ok(());
    }
    Err(Failure(
        UNAVAILABLE,
        format!("NameNode of {base} not reachable within {:.0}s: {}", limit.as_secs_f64(), tried.join(", ")),
    ))
}

fn target(name: &str) -> Result<(Arc<Client>, String, String), Failure> {
    let (uri, base, path) = split_name(name)?;
    Ok((client(&base)?, uri, path))
}

/// The status of a path, None when there is nothing there.
fn status(c: &Client, uri: &str, path: &str) -> Result<Option<hdfs_native::client::FileStatus>, Failure> {
    match run(uri, c.get_file_info(path)) {
        Ok(s) => Ok(Some(s)),
        Err(Failure(NOT_FOUND, _)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn not_found(uri: &str) -> Failure {
    Failure(NOT_FOUND, format!("{uri}: no such file or directory"))
}

#[repr(C)]
pub struct FileStat {
    length: i64,
    mtime_nsec: i64,
    is_dir: i32,
}

fn stat(name: &str, out: &mut FileStat) -> Result<i64, Failure> {
    let (c, uri, path) = target(name)?;
    let s = status(&c, &uri, &path)?.ok_or_else(|| not_found(&uri))?;
    *out = FileStat { length: s.length as i64, mtime_nsec: s.modification_time as i64 * 1_000_000, is_dir: s.isdir as i32 };
    Ok(0)
}

fn list(name: &str, mut each: impl FnMut(&str)) -> Result<i64, Failure> {
    let (c, uri, path) = target(name)?;
    let s = status(&c, &uri, &path)?.ok_or_else(|| not_found(&uri))?;
    if !s.isdir {
        return Err(Failure(FAILED_PRECONDITION, format!("{uri}: not a directory")));
    }
    let entries = run(&uri, c.list_status(&path, false))?;
    for e in &entries {
        each(e.path.trim_end_matches('/').rsplit('/').next().unwrap_or(""));
    }
    Ok(entries.len() as i64)
}

/// Files as Hadoop's own clients create them: 0666 less the configured umask, and the client configuration's
/// dfs.blocksize and dfs.replication when it sets them (hdfs-native on its own takes the NameNode's defaults; Java's
/// client takes its own configuration, so an edge node's or a job's settings govern what it writes).
fn write_options(uri: &str) -> Result<WriteOptions, Failure> {
    let settings = crate::settings();
    let bad = |e: String| Failure(INVALID_ARGUMENT, format!("{uri}: {e}"));
    let mut options = WriteOptions::default().overwrite(true).create_parent(true).permission(0o666 & !settings.umask());
    if let Some(size) = settings.bytes("dfs.blocksize").map_err(bad)? {
        options = options.block_size(size);
    }
    if let Some(replication) = settings.number::<u32>("dfs.replication").map_err(bad)? {
        options = options.replication(replication);
    }
    Ok(options)
}

fn mkdirs(name: &str, parents: bool) -> Result<i64, Failure> {
    let (c, uri, path) = target(name)?;
    if let Some(s) = status(&c, &uri, &path)? {
        // as TF's local filesystem: CreateDir says it exists (a file or not), RecursivelyCreateDir that a file is
        // in the way
        if !parents {
            return Err(Failure(crate::ALREADY_EXISTS, format!("{uri}: already exists")));
        }
        if !s.isdir {
            return Err(Failure(FAILED_PRECONDITION, format!("{uri}: a file, not a directory")));
        }
        return Ok(0);
    }
    run(&uri, c.mkdirs(&path, 0o777 & !crate::settings().umask(), parents))?;
    Ok(0)
}

/// mode 0: a file, 1: an empty directory, 2: anything, recursively.
fn delete(name: &str, mode: i32) -> Result<i64, Failure> {
    let (c, uri, path) = target(name)?;
    let s = status(&c, &uri, &path)?.ok_or_else(|| not_found(&uri))?;
    match (mode, s.isdir) {
        (0, true) => return Err(Failure(FAILED_PRECONDITION, format!("{uri}: is a directory"))),
        (1, false) => return Err(Failure(FAILED_PRECONDITION, format!("{uri}: not a directory"))),
        _ => {}
    }
    if !run(&uri, c.delete(&path, mode == 2))? {
        return Err(not_found(&uri));
    }
    Ok(0)
}

fn rename(src: &str, dst: &str) -> Result<i64, Failure> {
    let (suri, sbase, spath) = split_name(src)?;
    let (duri, dbase, dpath) = split_name(dst)?;
    let what = format!("{suri} -> {duri}");
    if resolved_base(&sbase) != resolved_base(&dbase) {
        return Err(Failure(INVALID_ARGUMENT, format!("{what}: rename across filesystems")));
    }
    let c = client(&sbase)?;
    if spath.trim_end_matches('/') == dpath.trim_end_matches('/') {
        // a rename onto itself changes nothing (POSIX's and TF's local rename), where HDFS refuses it
        status(&c, &suri, &spath)?.ok_or_else(|| not_found(&suri))?;
        return Ok(0);
    }
    // TF expects rename to replace a file at the destination: HDFS rename2 with OVERWRITE does, atomically
    run(&what, c.rename(&spath, &dpath, true)).map_err(|Failure(code, m)| match code {
        NOT_FOUND => Failure(code, format!("{what}: the source or the destination's parent is missing")),
        // a file onto a folder or back, onto a folder that is not empty, into itself: the NameNode's plain
        // IOException, an error of the request (as the local filesystem has it), its first line only
        crate::INTERNAL => Failure(FAILED_PRECONDITION, m.lines().next().unwrap_or("").to_string()),
        _ => Failure(code, m),
    })?;
    Ok(0)
}

/// How a file TF writes reaches HDFS.
enum Mode {
    /// Written under a hidden temporary name beside the target, renamed over it at close.
    Temp(String),
    /// Written in place (appended files; TFOY_HDFS_ATOMIC_WRITES=0), what was flushed readable (hsync).
    InPlace,
    /// An event file: kept in a local spool and published whole at each Flush (temporary name, then rename).
    /// hdfs-native cannot read the last block of a file still being written, so an event file written in place
    /// would stay unreadable to TensorBoard until training ends; published whole, every Flush is visible.
    Spooled { spool: std::fs::File, dirty: bool },
}

struct Writer {
    client: Arc<Client>,
    uri: String,
    path: String,
    mode: Mode,
    inner: Option<FileWriter>, // the HDFS file being written (none between a spooled file's publications)
    buf: Vec<u8>,
    failed: bool, // a write or flush failed: what is there is not what TF wrote
}

impl Writer {
    fn push(&mut self) -> Result<(), Failure> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Mode::Spooled { spool, dirty } = &mut self.mode {
            use std::io::Write;
            spool.write_all(&self.buf).map_err(|e| Failure(crate::INTERNAL, format!("{}: local spool: {e}", self.uri)))?;
            *dirty = true;
            self.buf.clear();
            return Ok(());
        }
        // hdfs-native's packets keep the Bytes they are cut from until the DataNode acknowledges them: the buffer
        // goes with them and a new one of the full size takes its place (growing one from empty copies it again)
        let data = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(WRITE_CHUNK)));
        let inner = self.inner.as_mut().expect("an open HDFS file");
        run(&self.uri, inner.write_bytes(data)).map(|_| ())
    }

    /// A spooled file's content so far, published whole under its name.
    fn publish(&mut self) -> Result<(), Failure> {
        let Mode::Spooled { spool, dirty } = &mut self.mode else { return Ok(()) };
        if !*dirty {
            return Ok(());
        }
        use std::os::unix::fs::FileExt;
        let options = write_options(&self.uri)?;
        let temp = temp_name(&self.path);
        let mut out = run(&self.uri, self.client.create(&temp, &options))?;
        let local = |e: std::io::Error| Failure(crate::INTERNAL, format!("{}: local spool: {e}", self.uri));
        let size = spool.metadata().map_err(local)?.len();
        let mut offset = 0u64;
        let mut chunk = vec![0u8; WRITE_CHUNK];
        let written = (|| {
            while offset < size {
                let n = spool.read_at(&mut chunk, offset).map_err(local)?;
                if n == 0 {
                    break;
                }
                run(&self.uri, out.write_bytes(Bytes::copy_from_slice(&chunk[..n])))?;
                offset += n as u64;
            }
            run(&self.uri, out.close())?;
            run(&self.uri, self.client.rename(&temp, &self.path, true))
        })();
        if written.is_err() {
            let _ = run(&self.uri, self.client.delete(&temp, false));
        }
        *dirty = written.is_err();
        written
    }

    /// Finishes the file: `keep` publishes what was written (as closing a local file does), else a temporary
    /// file goes and the target stays as it was.
    fn finish(mut self, keep: bool) -> Result<(), Failure> {
        let pushed = self.push();
        let closed = match self.inner.take() {
            Some(mut inner) => run(&self.uri, inner.close()),
            None => Ok(()),
        };
        let result = match (&self.mode, pushed.and(closed)) {
            (Mode::Temp(temp), Ok(())) if keep => run(&self.uri, self.client.rename(temp, &self.path, true)),
            (Mode::Spooled { .. }, Ok(())) if keep => self.publish(),
            (_, r) => r,
        };
        if let Mode::Temp(temp) = &self.mode {
            if result.is_err() || !keep {
                let _ = run(&self.uri, self.client.delete(temp, false));
            }
        }
        result
    }
}

fn writers() -> &'static Mutex<HashMap<i64, Arc<Mutex<Writer>>>> {
    static WRITERS: OnceLock<Mutex<HashMap<i64, Arc<Mutex<Writer>>>>> = OnceLock::new();
    WRITERS.get_or_init(Default::default)
}

fn writer(handle: i64) -> Result<Arc<Mutex<Writer>>, Failure> {
    writers().lock().unwrap().get(&handle).cloned().ok_or_else(|| {
        Failure(FAILED_PRECONDITION, format!("tfoy HDFS writer: no open file {handle} (closed already?)"))
    })
}

fn take_writer(handle: i64) -> Option<Writer> {
    let w = writers().lock().unwrap().remove(&handle)?;
    // TF uses a file from one thread at a time; a call still under way keeps its reference until it returns
    let w = Arc::try_unwrap(w).unwrap_or_else(|shared| {
        let mut guard = shared.lock().unwrap();
        let taken = Writer {
            client: Arc::clone(&guard.client),
            uri: guard.uri.clone(),
            path: guard.path.clone(),
            mode: std::mem::replace(&mut guard.mode, Mode::InPlace),
            inner: guard.inner.take(),
            buf: std::mem::take(&mut guard.buf),
            failed: guard.failed,
        };
        Mutex::new(taken)
    });
    Some(w.into_inner().unwrap())
}

fn atomic_writes() -> bool {
    !std::env::var("TFOY_HDFS_ATOMIC_WRITES").is_ok_and(|v| v.trim() == "0")
}

/// ".name.tfoy-tmp-<pid>-<n>" beside the target: hidden, as HDFS tools (MapReduce, Spark, Hive) treat "."-names.
/// A name too long for that (HDFS takes 255 bytes a component) gets ".tfoy-tmp-<pid>-<n>".
fn temp_name(path: &str) -> String {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let n = state().next.fetch_add(1, Ordering::Relaxed);
    let long = format!("{dir}/.{name}.tfoy-tmp-{}-{n}", std::process::id());
    if long.len() - dir.len() - 1 <= 255 { long } else { format!("{dir}/.tfoy-tmp-{}-{n}", std::process::id()) }
}

fn spool_file(uri: &str) -> Result<std::fs::File, Failure> {
    let dir = std::env::temp_dir();
    let path = dir.join(format!("tfoy-spool-{}-{}", std::process::id(), state().next.fetch_add(1, Ordering::Relaxed)));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path);
    let file = file.map_err(|e| Failure(crate::INTERNAL, format!("{uri}: local spool in {}: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&path); // unlinked at once: it vanishes with the process, however that ends
    Ok(file)
}

fn create(name: &str, append: bool, initial: &mut i64) -> Result<i64, Failure> {
    let (c, uri, path) = target(name)?;
    let existing = status(&c, &uri, &path)?;
    if existing.as_ref().is_some_and(|s| s.isdir) {
        return Err(Failure(FAILED_PRECONDITION, format!("{uri}: is a directory")));
    }
    let options = write_options(&uri)?;
    let (inner, mode) = match existing {
        Some(s) if append => {
            *initial = s.length as i64;
            (Some(run(&uri, c.append(&path))?), Mode::InPlace)
        }
        _ if append || !atomic_writes() => (Some(run(&uri, c.create(&path, &options))?), Mode::InPlace),
        _ if path.contains(".tfevents.") => (None, Mode::Spooled { spool: spool_file(&uri)?, dirty: true }),
        _ => {
            let temp = temp_name(&path);
            (Some(run(&uri, c.create(&temp, &options))?), Mode::Temp(temp))
        }
    };
    let mut w = Writer { client: c, uri, path, mode, inner, buf: Vec::with_capacity(WRITE_CHUNK), failed: false };
    w.publish()?; // a spooled file is there (empty) from the start, as TF's other filesystems have it
    let handle = state().next.fetch_add(1, Ordering::Relaxed);
    writers().lock().unwrap().insert(handle, Arc::new(Mutex::new(w)));
    Ok(handle)
}

fn write(handle: i64, data: &[u8]) -> Result<i64, Failure> {
    let w = writer(handle)?;
    let mut w = w.lock().unwrap();
    // chunk by chunk: one large Append (Keras hands over a model's weights in one) copied into the buffer whole
    // would grow it by doubling, copying what it holds each time
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len().min(WRITE_CHUNK - w.buf.len());
        w.buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if w.buf.len() >= WRITE_CHUNK {
            w.push().inspect_err(|_| w.failed = true)?;
        }
    }
    Ok(0)
}

fn flush(handle: i64, sync: bool) -> Result<i64, Failure> {
    let w = writer(handle)?;
    let mut w = w.lock().unwrap();
    let flushed = flush_locked(&mut w, sync);
    if flushed.is_err() {
        w.failed = true;
    }
    flushed
}

fn flush_locked(w: &mut Writer, sync: bool) -> Result<i64, Failure> {
    w.push()?;
    let Writer { uri, inner, mode, .. } = &mut *w;
    match (mode, inner) {
        (Mode::Spooled { .. }, _) => w.publish()?,
        // in place, readers follow the file: a Flush makes what it has readable too (Python's GFile has flush()
        // but no sync())
        (Mode::InPlace, Some(inner)) => run(uri, inner.hsync())?,
        (_, Some(inner)) if sync => run(uri, inner.hsync())?,
        _ => {}
    }
    Ok(0)
}

fn close(handle: i64) -> Result<i64, Failure> {
    let w = take_writer(handle)
        .ok_or_else(|| Failure(FAILED_PRECONDITION, format!("tfoy HDFS writer: no open file {handle}")))?;
    w.finish(true)?;
    Ok(0)
}

/// TF drops a file it did not close: Python's GFile without close() or `with` (its destructor closes nothing), or
/// C++ code returning early. What was written is kept, as a local file keeps it; only after a failed write or flush
/// does a temporary file go, so that the target stays as it was rather than become part of what TF meant.
fn abort(handle: i64) {
    if let Some(w) = take_writer(handle) {
        let keep = !(w.failed && matches!(w.mode, Mode::Temp(_)));
        let _ = w.finish(keep);
    }
}

// ---- the C functions the plugin calls; each returns >= 0, or -(TF_Code) with a message in err ----------------

type Names = unsafe extern "C" fn(ctx: *mut c_void, name: *const c_char);

#[repr(C)]
pub struct FsOps {
    stat: unsafe extern "C" fn(*const c_char, *mut FileStat, *mut c_char, usize) -> i64,
    list: unsafe extern "C" fn(*const c_char, Names, *mut c_void, *mut c_char, usize) -> i64,
    mkdirs: unsafe extern "C" fn(*const c_char, i32, *mut c_char, usize) -> i64,
    delete: unsafe extern "C" fn(*const c_char, i32, *mut c_char, usize) -> i64,
    rename: unsafe extern "C" fn(*const c_char, *const c_char, *mut c_char, usize) -> i64,
    create: unsafe extern "C" fn(*const c_char, i32, *mut i64, *mut c_char, usize) -> i64,
    write: unsafe extern "C" fn(i64, *const u8, usize, *mut c_char, usize) -> i64,
    flush: unsafe extern "C" fn(i64, i32, *mut c_char, usize) -> i64,
    close: unsafe extern "C" fn(i64, *mut c_char, usize) -> i64,
    abort: unsafe extern "C" fn(i64),
}

unsafe fn text(p: *const c_char) -> String {
    CStr::from_ptr(p).to_string_lossy().into_owned()
}

unsafe fn answer(result: Result<i64, Failure>, err: *mut c_char, errlen: usize) -> i64 {
    match result {
        Ok(v) => v,
        Err(f) => report(f, err, errlen),
    }
}

unsafe extern "C" fn c_stat(name: *const c_char, out: *mut FileStat, err: *mut c_char, errlen: usize) -> i64 {
    let name = text(name);
    answer(guarded(|| stat(&name, &mut *out)), err, errlen)
}

unsafe extern "C" fn c_list(name: *const c_char, each: Names, ctx: *mut c_void, err: *mut c_char, errlen: usize) -> i64 {
    let name = text(name);
    let each = |entry: &str| {
        if let Ok(s) = CString::new(entry) {
            each(ctx, s.as_ptr());
        }
    };
    answer(guarded(|| list(&name, each)), err, errlen)
}

unsafe extern "C" fn c_mkdirs(name: *const c_char, parents: i32, err: *mut c_char, errlen: usize) -> i64 {
    let name = text(name);
    answer(guarded(|| mkdirs(&name, parents != 0)), err, errlen)
}

unsafe extern "C" fn c_delete(name: *const c_char, mode: i32, err: *mut c_char, errlen: usize) -> i64 {
    let name = text(name);
    answer(guarded(|| delete(&name, mode)), err, errlen)
}

unsafe extern "C" fn c_rename(src: *const c_char, dst: *const c_char, err: *mut c_char, errlen: usize) -> i64 {
    let (src, dst) = (text(src), text(dst));
    answer(guarded(|| rename(&src, &dst)), err, errlen)
}

unsafe extern "C" fn c_create(name: *const c_char, append: i32, size: *mut i64, err: *mut c_char, errlen: usize) -> i64 {
    let name = text(name);
    *size = 0;
    answer(guarded(|| create(&name, append != 0, &mut *size)), err, errlen)
}

unsafe extern "C" fn c_write(handle: i64, data: *const u8, n: usize, err: *mut c_char, errlen: usize) -> i64 {
    let data = if n == 0 { &[][..] } else { std::slice::from_raw_parts(data, n) };
    answer(guarded(|| write(handle, data)), err, errlen)
}

unsafe extern "C" fn c_flush(handle: i64, sync: i32, err: *mut c_char, errlen: usize) -> i64 {
    answer(guarded(|| flush(handle, sync != 0)), err, errlen)
}

unsafe extern "C" fn c_close(handle: i64, err: *mut c_char, errlen: usize) -> i64 {
    answer(guarded(|| close(handle)), err, errlen)
}

unsafe extern "C" fn c_abort(handle: i64) {
    let _ = guarded(|| {
        abort(handle);
        Ok(())
    });
}

static OPS: FsOps = FsOps {
    stat: c_stat,
    list: c_list,
    mkdirs: c_mkdirs,
    delete: c_delete,
    rename: c_rename,
    create: c_create,
    write: c_write,
    flush: c_flush,
    close: c_close,
    abort: c_abort,
};

/// The filesystem functions, for tfoy_bridge_set_fs_ops in the plugin (hdfs_io/tf_bridge.py passes them on).
#[no_mangle]
pub extern "C" fn tfoy_hdfs_fs_ops() -> *const FsOps {
    &OPS
}
