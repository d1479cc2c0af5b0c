//! HDFS reads for tfoy's TensorFlow filesystem plugin (../tf_bridge.cc), straight from hdfs-native's Rust client.
//!
//! The plugin can be served by Python callbacks (hdfs_io/tf_bridge.py), but then every 1 MiB read of every file
//! takes the GIL, and hdfs-native's Python `read(n)` opens a new DataNode stream per call. These three functions
//! have the plugin's callback signatures, so the plugin calls them directly on TF's threads: one block stream per
//! file read front to back, each packet copied once, into TF's buffer; or, when this host's DataNode has every
//! block and allows it, the block files themselves (short-circuit local reads, local.rs). Errors come back as a
//! TF_Code (negated) and a message naming the file.

mod fs;
mod local;
mod rpc;

use std::collections::HashMap;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::{Buf, Bytes};
use futures::stream::{BoxStream, StreamExt};
use hdfs_native::file::FileReader;
use hdfs_native::{Client, ClientBuilder, HdfsError};
use tokio::runtime::Runtime;

// TF_Code values (tensorflow/c/tf_status.h)
const INVALID_ARGUMENT: i64 = 3;
const DEADLINE_EXCEEDED: i64 = 4;
const NOT_FOUND: i64 = 5;
const ALREADY_EXISTS: i64 = 6;
const PERMISSION_DENIED: i64 = 7;
const FAILED_PRECONDITION: i64 = 9;
const INTERNAL: i64 = 13;
const UNAVAILABLE: i64 = 14;
const DATA_LOSS: i64 = 15;

/// The packet size of HDFS writes unless the configuration sets dfs.client-write-packet-size (Java's client: 64
/// KiB). TF writes checkpoints and models in bulk, and the DataNode's cost is mostly per packet: 1 MiB packets took
/// a 64 MiB write from ~330 to ~500 MiB/s on the embedded cluster (docs/hdfs_io.md). The DataNode takes up to 16 MiB.
const PACKET_SIZE_KEY: &str = "dfs.client-write-packet-size";
const WRITE_PACKET_SIZE: u32 = 1 << 20;

struct OpenFile {
    uri: String,
    base: String,
    path: String,
    length: usize,
    local: Option<local::LocalFile>, // every block from a local replica (local.rs), else the DataNode stream:
    reader: Option<FileReader>,      // opened when first needed
    stream: Option<BoxStream<'static, hdfs_native::Result<Bytes>>>,
    pos: usize,      // file offset of the next byte handed out (the first of `leftover`)
    leftover: Bytes, // the rest of the last packet
    follows: bool,   // opened by TF's own name: the file may be growing (an event file TensorBoard follows)
}

struct State {
    runtime: Runtime,
    clients: Mutex<HashMap<String, Arc<Client>>>,
    files: Mutex<HashMap<i64, Arc<Mutex<OpenFile>>>>,
    next: AtomicI64,
    rpc: local::Pool,
    settings: Mutex<HashMap<String, Arc<local::Settings>>>, // by HADOOP_CONF_DIR / HADOOP_HOME
    local_files: AtomicI64,
    streamed_files: AtomicI64,
    local_fallbacks: AtomicI64, // local reads that failed mid-file and went on through the DataNode
    last_fallback: Mutex<String>,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| State {
        runtime: tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tfoy-hdfs-io")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("tokio runtime"),
        clients: Mutex::new(HashMap::new()),
        files: Mutex::new(HashMap::new()),
        next: AtomicI64::new(1),
        rpc: local::Pool::default(),
        settings: Mutex::new(HashMap::new()),
        local_files: AtomicI64::new(0),
        streamed_files: AtomicI64::new(0),
        local_fallbacks: AtomicI64::new(0),
        last_fallback: Mutex::new(String::new()),
    })
}

/// The runtime's threads receive packets ahead of TF (hdfs-native buffers up to 100 per file) and so can wait;
/// at TF's priority they preempt its parsing and batching threads instead, which on a busy machine costs more than
/// the reading itself (benchmarks/hdfs_read.py, 2 cores: 0.85-0.88 of local tf.data at nice 0, 0.93-0.955 at
/// nice 10, 0.90-0.91 at 5 and 19). Linux nice values are per thread. TFOY_HDFS_READER_NICE: 0-19, 0 keeps TF's.
fn lower_priority() {
    let nice = std::env::var("TFOY_HDFS_READER_NICE").ok().and_then(|v| v.trim().parse::<i32>().ok()).unwrap_or(10);
    if nice > 0 {
        // SAFETY: plain syscalls on the calling thread; a refusal only leaves the priority as it was
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice.min(19));
        }
    }
}

struct Failure(i64, String);

fn failure(uri: &str, err: HdfsError) -> Failure {
    // server-side errors carry the Java class and the whole stack trace: keep the class and the first line
    let text = match &err {
        HdfsError::RPCError(class, message) | HdfsError::FatalRPCError(class, message) => {
            let short = class.rsplit('.').next().unwrap_or(class);
            format!("{short}: {}", message.lines().next().unwrap_or("").trim())
        }
        // hdfs-native tried each replica (a connection or checksum failure each) and lists their locations
        HdfsError::DataTransferError(m) if m.starts_with("All DataNodes failed") => {
            "no DataNode could serve this part of the file: every replica was unreachable or failed its checksum"
                .to_string()
        }
        other => other.to_string(),
    };
    let remote = |name: &str| matches!(&err, HdfsError::RPCError(class, _) if class.contains(name));
    let code = match &err {
        HdfsError::FileNotFound(_) => NOT_FOUND,
        _ if remote("FileNotFoundException") => NOT_FOUND,
        _ if remote("AccessControlException") => PERMISSION_DENIED,
        _ if remote("FileAlreadyExistsException") => ALREADY_EXISTS,
        _ if remote("ParentNotDirectoryException") || remote("PathIsNotEmptyDirectoryException") => {
            FAILED_PRECONDITION
        }
        // another writer holds the file's lease, the NameNode is starting: worth trying again later
        _ if remote("AlreadyBeingCreatedException") || remote("RecoveryInProgressException") => UNAVAILABLE,
        _ if remote("SafeModeException") || remote("StandbyException") => UNAVAILABLE,
        _ if remote("PathComponentTooLongException") || remote("InvalidPathException") => INVALID_ARGUMENT,
        HdfsError::IOError(_) | HdfsError::DataTransferError(_) => UNAVAILABLE,
        HdfsError::ChecksumError => DATA_LOSS,
        HdfsError::InvalidPath(_) | HdfsError::InvalidArgument(_) | HdfsError::UrlParseError(_) => INVALID_ARGUMENT,
        _ => INTERNAL,
    };
    let message = match code {
        NOT_FOUND => format!("{uri}: no such file or directory"),
        PERMISSION_DENIED => {
            let user = std::env::var("HADOOP_USER_NAME").or_else(|_| std::env::var("USER")).unwrap_or_default();
            let detail = text.split("Permission denied:").last().unwrap_or("").trim();
            format!("{uri}: permission denied for HDFS user '{user}' ({detail})")
        }
        FAILED_PRECONDITION if remote("ParentNotDirectoryException") => {
            format!("{uri}: a parent of this path is a file, not a directory ({text})")
        }
        FAILED_PRECONDITION => format!("{uri}: directory not empty"),
        ALREADY_EXISTS => format!("{uri}: already exists"),
        _ => format!("{uri}: {text}"),
    };
    Failure(code, message)
}

/// "tfoyrec://3/hdfs://nn:8020/p" (a bridge name) or "hdfs://nn:8020/p" (TF's own name for an hdfs:// or
/// viewfs:// file) -> ("hdfs://nn:8020/p", "hdfs://nn:8020", "/p"). "hdfs:///p" has the base "hdfs://": the
/// configuration's fs.defaultFS.
fn split_name(name: &str) -> Result<(String, String, String), Failure> {
    let bad = || Failure(INVALID_ARGUMENT, format!("{name}: not an hdfs://, viewfs:// or tfoy bridge name"));
    let uri = if fs::is_hadoop_uri(name) {
        name
    } else {
        let rest = &name[name.find("://").ok_or_else(bad)? + 3..];
        &rest[rest.find('/').ok_or_else(bad)? + 1..]
    };
    let after_scheme = uri.find("://").ok_or_else(bad)? + 3;
    let path_at = uri[after_scheme..].find('/').map(|i| i + after_scheme).unwrap_or(uri.len());
    let path = if path_at < uri.len() { &uri[path_at..] } else { "/" };
    Ok((uri.to_string(), uri[..path_at].to_string(), path.to_string()))
}

fn client(base: &str) -> Result<Arc<Client>, Failure> {
    let st = state();
    // one client per filesystem, user and configuration, as the Python side keeps them
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let key = format!("{base}\n{}\n{}", env("HADOOP_USER_NAME"), env("HADOOP_CONF_DIR"));
    if let Some(c) = st.clients.lock().unwrap().get(&key) {
        return Ok(Arc::clone(c));
    }
    // A NameNode that is down would have hdfs-native retry for minutes: a bounded TCP probe names it at once.
    let settings = settings();
    fs::probe_namenodes(&settings, base)?;
    // configuration from HADOOP_CONF_DIR and the user from HADOOP_USER_NAME, as the Python client does;
    // "hdfs://" (from hdfs:///path) is the configuration's fs.defaultFS
    let mut builder = ClientBuilder::new().with_io_runtime(st.runtime.handle().clone());
    if settings.get(PACKET_SIZE_KEY).is_none() {
        builder = builder.with_config([(PACKET_SIZE_KEY, WRITE_PACKET_SIZE.to_string())]);
    }
    if !base.ends_with("://") {
        builder = builder.with_url(base);
    }
    let c = Arc::new(builder.build().map_err(|e| failure(base, e))?);
    st.clients.lock().unwrap().insert(key, Arc::clone(&c));
    Ok(c)
}

/// The client settings of the current HADOOP_CONF_DIR / HADOOP_HOME, read once per folder.
pub(crate) fn settings() -> Arc<local::Settings> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let dir = format!("{}\n{}", env("HADOOP_CONF_DIR"), env("HADOOP_HOME"));
    Arc::clone(state().settings.lock().unwrap().entry(dir).or_insert_with(|| Arc::new(local::Settings::load())))
}

fn open(name: &str) -> Result<(i64, i64), Failure> {
    let (uri, base, path) = split_name(name)?;
    let st = state();
    let mut file = OpenFile {
        uri,
        base,
        path,
        length: 0,
        local: None,
        reader: None,
        stream: None,
        pos: 0,
        leftover: Bytes::new(),
        follows: fs::is_hadoop_uri(name),
    };
    match open_local(&file) {
        Ok(lf) => {
            file.length = lf.length() as usize;
            file.local = Some(lf);
            st.local_files.fetch_add(1, Ordering::Relaxed);
        }
        Err(reason) => {
            if let Some(reason) = reason {
                *st.last_fallback.lock().unwrap() = format!("{}: {reason}", file.uri);
            }
            let reader = open_stream(&file).map_err(|f| is_a_directory(&file, f))?;
            file.length = reader.file_length();
            file.reader = Some(reader);
            st.streamed_files.fetch_add(1, Ordering::Relaxed);
        }
    }
    let size = file.length as i64;
    let handle = st.next.fetch_add(1, Ordering::Relaxed);
    st.files.lock().unwrap().insert(handle, Arc::new(Mutex::new(file)));
    Ok((handle, size))
}

/// A read of a folder fails as NOT_FOUND in HDFS's words ("not a file"); TF's local filesystem says
/// FAILED_PRECONDITION, is a directory. Asked only on that error, so a read costs no extra NameNode call.
fn is_a_directory(f: &OpenFile, failed: Failure) -> Failure {
    if failed.0 != NOT_FOUND {
        return failed;
    }
    let is_dir = client(&f.base).ok().and_then(|c| fs::run(&f.uri, c.get_file_info(&f.path)).ok()).is_some_and(|s| s.isdir);
    if is_dir { Failure(FAILED_PRECONDITION, format!("{}: is a directory", f.uri)) } else { failed }
}

/// Reopens a file whose end was reached, keeping the new version when it is longer.
fn refresh(f: &mut OpenFile) -> Result<(), Failure> {
    match open_local(f) {
        Ok(lf) if lf.length() as usize > f.length => {
            f.length = lf.length() as usize;
            f.local = Some(lf);
        }
        Ok(_) => {}
        Err(_) => {
            let reader = open_stream(f)?;
            if reader.file_length() > f.length {
                f.length = reader.file_length();
                f.local = None;
                f.reader = Some(reader);
            }
        }
    }
    f.stream = None;
    f.leftover = Bytes::new();
    f.pos = usize::MAX;
    Ok(())
}

/// The file from local replicas, or why not (None: short-circuit reads are off, or not an hdfs:// file).
fn open_local(f: &OpenFile) -> Result<local::LocalFile, Option<String>> {
    let st = state();
    let settings = settings();
    let authority = f.base.strip_prefix("hdfs://").filter(|a| !a.is_empty());
    let (true, Some(authority)) = (settings.enabled(), authority) else {
        return Err(None);
    };
    local::open(&st.rpc, &settings, authority, &f.path, &hdfs_user()).map_err(Some)
}

fn open_stream(f: &OpenFile) -> Result<FileReader, Failure> {
    let c = client(&f.base)?;
    fs::run(&f.uri, c.read(&f.path))
}

/// The HDFS user under SIMPLE authentication, as hdfs-native decides it: HADOOP_USER_NAME, else the login name.
fn hdfs_user() -> String {
    if let Ok(u) = std::env::var("HADOOP_USER_NAME") {
        return u;
    }
    // SAFETY: getpwuid_r writes into the buffers given; the name is copied out before they go
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(libc::geteuid(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut out) == 0 && !out.is_null() {
            return CStr::from_ptr(pwd.pw_name).to_string_lossy().into_owned();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "unknown".to_string())
}

fn read(handle: i64, offset: usize, out: &mut [u8]) -> Result<usize, Failure> {
    let st = state();
    let file = st.files.lock().unwrap().get(&handle).cloned();
    let file = file.ok_or_else(|| Failure(INTERNAL, format!("tfoy HDFS reader: no open file {handle}")))?;
    let mut f = file.lock().unwrap();
    if f.follows && offset >= f.length {
        // At the end of a file that may still be written: a newer, longer version (an event file published
        // again, see fs.rs) or what an appending writer has synced since is readable. One NameNode call per end.
        refresh(&mut f)?;
    }
    let length = f.length;
    if let Some(lf) = f.local.as_mut() {
        match lf.read(offset as u64, out) {
            Ok(got) => {
                f.pos = offset + got;
                return Ok(got);
            }
            Err(reason) => {
                // a failed checksum or a vanished block file: the DataNode decides (another replica, or the error)
                *st.last_fallback.lock().unwrap() = format!("{}: {reason}", f.uri);
                st.local_fallbacks.fetch_add(1, Ordering::Relaxed);
                f.local = None;
                f.pos = usize::MAX;
            }
        }
    }
    if f.reader.is_none() {
        let reader = open_stream(&f)?;
        f.reader = Some(reader);
    }
    if offset != f.pos {
        // not where the stream is: start a new one there (TF's readers go front to back, so this is rare)
        f.stream = None;
        f.leftover = Bytes::new();
        f.pos = offset.min(length);
    }
    let mut got = 0;
    while got < out.len() && f.pos < length {
        if f.leftover.is_empty() {
            if f.stream.is_none() {
                let (pos, rest) = (f.pos, length - f.pos);
                f.stream = Some(f.reader.as_ref().unwrap().read_range_stream(pos, rest).boxed());
            }
            let next = st.runtime.block_on(f.stream.as_mut().unwrap().next());
            match next {
                Some(Ok(bytes)) => f.leftover = bytes,
                Some(Err(e)) => {
                    f.stream = None;
                    let Failure(code, message) = failure(&f.uri, e);
                    return Err(Failure(code, format!("{message} (reading at byte {})", f.pos)));
                }
                None => {
                    let uri = f.uri.clone();
                    return Err(Failure(DATA_LOSS, format!("{uri}: stream ended at {} of {length} bytes", f.pos)));
                }
            }
        }
        let take = (out.len() - got).min(f.leftover.len());
        out[got..got + take].copy_from_slice(&f.leftover[..take]);
        f.leftover.advance(take);
        f.pos += take;
        got += take;
    }
    Ok(got)
}

unsafe fn report(failure: Failure, err: *mut c_char, errlen: usize) -> i64 {
    if !err.is_null() && errlen > 0 {
        let bytes = failure.1.as_bytes();
        let n = bytes.len().min(errlen - 1);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), err as *mut u8, n);
        *err.add(n) = 0;
    }
    -failure.0
}

fn guarded<T>(f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(Failure(INTERNAL, "tfoy HDFS reader: internal panic".to_string())))
}

/// Opens a file by its bridge name; returns a handle and sets *size, or returns -(TF_Code) with a message.
///
/// # Safety
/// `name` is a NUL-terminated string; `size` points to an i64; `err` has room for `errlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn tfoy_hdfs_open(name: *const c_char, size: *mut i64, err: *mut c_char, errlen: usize) -> i64 {
    let name = CStr::from_ptr(name).to_string_lossy().into_owned();
    match guarded(|| open(&name)) {
        Ok((handle, length)) => {
            *size = length;
            handle
        }
        Err(f) => report(f, err, errlen),
    }
}

/// Reads up to n bytes at offset into buf; fewer only at the end of the file. Returns bytes read or -(TF_Code).
///
/// # Safety
/// `buf` has room for `n` bytes; `err` for `errlen`.
#[no_mangle]
pub unsafe extern "C" fn tfoy_hdfs_read(
    handle: i64,
    offset: u64,
    n: usize,
    buf: *mut c_char,
    err: *mut c_char,
    errlen: usize,
) -> i64 {
    let out = std::slice::from_raw_parts_mut(buf as *mut u8, n);
    match guarded(|| read(handle, offset as usize, out)) {
        Ok(got) => got as i64,
        Err(f) => report(f, err, errlen),
    }
}

/// How files were read so far: counts[0] from local replicas, [1] through DataNode streams, [2] local reads that
/// failed and went on through the DataNode; `reason` gets why the last file was not (or no longer) read locally.
///
/// # Safety
/// `counts` points to 3 i64; `reason` has room for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn tfoy_hdfs_local_stats(counts: *mut i64, reason: *mut c_char, len: usize) {
    let st = state();
    *counts = st.local_files.load(Ordering::Relaxed);
    *counts.add(1) = st.streamed_files.load(Ordering::Relaxed);
    *counts.add(2) = st.local_fallbacks.load(Ordering::Relaxed);
    let text = st.last_fallback.lock().unwrap().clone();
    report(Failure(0, text), reason, len);
}

/// Forgets an open file.
#[no_mangle]
pub extern "C" fn tfoy_hdfs_close(handle: i64) {
    let _ = catch_unwind(|| {
        state().files.lock().unwrap().remove(&handle);
    });
}
