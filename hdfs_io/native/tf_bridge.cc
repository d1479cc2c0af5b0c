// A TensorFlow filesystem plugin for HDFS: hdfs:// and viewfs:// for TF's and Keras's own APIs, and two private
// schemes through which hdfs_io's checked readers stream files into TF's C++ readers.
//
// TF >= 2.17 has no hdfs:// and tensorflow-io does not load on it. The plugin's file operations are served by
// hdfs-native's Rust client (hdfs_reader/, called on TF's threads, no Python, no JVM):
//
//   hdfs://nn:8020/p, hdfs:///p (fs.defaultFS), viewfs://cluster/p
//                            TF's whole filesystem: random-access reads (short-circuit where the cluster allows),
//                            writable and appendable files streamed to HDFS, stat, listing, directories, delete,
//                            rename with overwrite. Globs, copies and walks are TF's own, on top of these.
//   tfoyraw://<token>/<uri>  the file's bytes, unchanged, for hdfs_io's readers (the token ties a file to the
//                            statistics of the dataset reading it, and to the lines it saw)
//   tfoyrec://<token>/<uri>  the same, for TFRecord files read front to back: the plugin walks the record framing
//                            as bytes pass and checks every length and data CRC32C itself, because TF's errors
//                            ("corrupted record at 592") name neither the file nor the record's offset. A bad
//                            record fails the read with DATA_LOSS naming both. (About 10 ms of CRC per 60 MB.)
//
// Reads of the private schemes may also be served by Python callbacks (hdfs_io/tf_bridge.py) when the Rust
// reader is not built; hdfs:// and viewfs:// then answer FAILED_PRECONDITION saying so.

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>
#include <algorithm>

#include "tensorflow/c/experimental/filesystem/filesystem_interface.h"
#include "tensorflow/c/tf_status.h"

extern "C" {
// handle >= 0 and *size, or -(TF_Code) with a message in err
typedef int64_t (*tfoy_open_fn)(const char* name, int64_t* size, char* err, size_t errlen);
// bytes read (fewer than n only at the end of the file), or -(TF_Code) with a message in err
typedef int64_t (*tfoy_read_fn)(int64_t handle, uint64_t offset, size_t n, char* buf, char* err, size_t errlen);
typedef void (*tfoy_close_fn)(int64_t handle);
// told when TF is done with a file (or failed to open it): bytes read, lines seen (newlines, plus an unterminated
// last line), which hdfs_io compares with the CSV rows TF parsed to find files with bad lines, and what went wrong
// (null if nothing did): a reader that ignores errors to count rows must not lose a failed read.
typedef void (*tfoy_done_fn)(const char* name, uint64_t bytes, uint64_t lines, const char* error);

// The rest of the filesystem (hdfs_reader/src/fs.rs, same layout): each returns >= 0, or -(TF_Code) with a
// message in err.
struct tfoy_file_stat {
  int64_t length;
  int64_t mtime_nsec;
  int32_t is_dir;
};
typedef void (*tfoy_name_fn)(void* ctx, const char* name);
struct tfoy_fs_ops {
  int64_t (*stat)(const char* uri, tfoy_file_stat* out, char* err, size_t errlen);
  int64_t (*list)(const char* uri, tfoy_name_fn each, void* ctx, char* err, size_t errlen);
  int64_t (*mkdirs)(const char* uri, int32_t parents, char* err, size_t errlen);
  int64_t (*remove)(const char* uri, int32_t mode, char* err, size_t errlen);  // 0 file, 1 empty dir, 2 recursive
  int64_t (*rename)(const char* src, const char* dst, char* err, size_t errlen);
  int64_t (*create)(const char* uri, int32_t append, int64_t* size, char* err, size_t errlen);  // -> handle
  int64_t (*write)(int64_t handle, const char* data, size_t n, char* err, size_t errlen);
  int64_t (*flush)(int64_t handle, int32_t sync, char* err, size_t errlen);
  int64_t (*close)(int64_t handle, char* err, size_t errlen);
  void (*abort)(int64_t handle);
};
}

namespace {

std::atomic<tfoy_open_fn> g_open{nullptr};
std::atomic<tfoy_read_fn> g_read{nullptr};
std::atomic<tfoy_close_fn> g_close{nullptr};
std::atomic<tfoy_done_fn> g_done{nullptr};
std::atomic<const tfoy_fs_ops*> g_fs{nullptr};

constexpr size_t kErrLen = 1024;
constexpr uint64_t kHeader = 12;  // uint64 length + uint32 masked crc of it
constexpr uint64_t kFooter = 4;   // uint32 masked crc of the data

// ---- CRC32C (Castagnoli), as TF's records use: SSE4.2 when the CPU has it, else a table ----------------------

uint32_t g_table[256];

void InitTable() {
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    g_table[i] = c;
  }
}

uint32_t ExtendTable(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
  while (n--) crc = g_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = ~crc & 0xFFFFFFFFu;
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
  return ~c32;
}

uint32_t (*g_extend)(uint32_t, const uint8_t*, size_t) = ExtendTable;

uint32_t Masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xA282EAD8u; }

uint64_t Le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

uint32_t Le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24); }

// ---- TFRecord framing, checked as the bytes stream past ---------------------------------------------------------

struct RecordWalk {
  enum State { kHeaderPart, kData, kFooterPart } state = kHeaderPart;
  uint64_t pos = 0;            // offset of the next byte the walk expects
  uint64_t record = 0;         // offset of the current record's header
  uint8_t part[kHeader] = {};  // header or footer bytes gathered across reads
  size_t have = 0;
  uint64_t remaining = 0;  // data bytes of the current record still to come
  uint32_t crc = 0;
  bool off = false;  // a read out of order: TF still checks, without the offsets

  // Returns an empty string, or what is wrong and where.
  std::string Feed(const uint8_t* p, size_t n) {
    char msg[256];
    while (n > 0) {
      if (state == kHeaderPart) {
        size_t take = std::min(n, static_cast<size_t>(kHeader - have));
        std::memcpy(part + have, p, take);
        have += take, p += take, n -= take, pos += take;
        if (have < kHeader) break;
        if (Masked(g_extend(0, part, 8)) != Le32(part + 8)) return At("length checksum mismatch");
        remaining = Le64(part);
        if (remaining >= (1ull << 31)) {
          std::snprintf(msg, sizeof msg, "implausible record length %llu", (unsigned long long)remaining);
          return At(msg);
        }
        crc = 0, have = 0, state = kData;
      } else if (state == kData) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(n, remaining));
        crc = g_extend(crc, p, take);
        remaining -= take, p += take, n -= take, pos += take;
        if (remaining == 0) state = kFooterPart;
      } else {
        size_t take = std::min(n, static_cast<size_t>(kFooter - have));
        std::memcpy(part + have, p, take);
        have += take, p += take, n -= take, pos += take;
        if (have < kFooter) break;
        if (Masked(crc) != Le32(part)) return At("data checksum mismatch");
        have = 0, record = pos, state = kHeaderPart;
      }
    }
    return "";
  }

  std::string End(uint64_t size) {
    char msg[256];
    if (state == kHeaderPart && have == 0) return "";
    if (state == kHeaderPart) {
      std::snprintf(msg, sizeof msg, "truncated header (%zu of %llu bytes)", have, (unsigned long long)kHeader);
    } else {
      std::snprintf(msg, sizeof msg, "truncated record (length %llu, file ends at %llu)",
                    (unsigned long long)Le64(part), (unsigned long long)size);
    }
    return At(msg);
  }

  std::string At(const char* reason) {
    char msg[320];
    std::snprintf(msg, sizeof msg, "corrupt TFRecord at byte offset %llu: %s", (unsigned long long)record, reason);
    return msg;
  }
};

struct File {
  int64_t handle;
  int64_t size;
  std::string name;  // as TF opened it
  std::string uri;   // for messages
  uint64_t bytes = 0;
  uint64_t newlines = 0;
  char last = '\n';
  bool walk;
  bool tracked;  // a one-pass name (token "T.P"): failures end the file and go to the done callback instead
  bool bridge;   // a private-scheme name: hdfs_io is told when TF is done with it
  std::mutex mu;
  RecordWalk rec;
  std::string error;  // sticky: the file is bad, or unreadable, from here on
  TF_Code code = TF_OK;
};

// "tfoyrec://3/hdfs://nn:8020/p" -> "hdfs://nn:8020/p"
std::string UriOf(const char* name) {
  const char* p = std::strstr(name, "://");
  p = p ? std::strchr(p + 3, '/') : nullptr;
  return p ? std::string(p + 1) : std::string(name);
}

void SetStatusFromCallback(int64_t code, const char* err, TF_Status* status) {
  TF_SetStatus(status, static_cast<TF_Code>(-code), err[0] ? err : "tfoy HDFS bridge: error without a message");
}

// ---- random access file -----------------------------------------------------------------------------------------

void FileCleanup(TF_RandomAccessFile* file) {
  auto* f = static_cast<File*>(file->plugin_file);
  tfoy_close_fn close = g_close.load();
  if (close != nullptr && f->handle >= 0) close(f->handle);
  if (f->error.empty() && f->bytes < static_cast<uint64_t>(f->size)) {
    f->error = f->uri + ": read stopped at byte " + std::to_string(f->bytes) + " of " + std::to_string(f->size);
  }
  tfoy_done_fn done = g_done.load();
  if (f->bridge && done != nullptr) {
    done(f->name.c_str(), f->bytes, f->newlines + (f->last != '\n'), f->error.empty() ? nullptr : f->error.c_str());
  }
  delete f;
}

int64_t FileRead(const TF_RandomAccessFile* file, uint64_t offset, size_t n, char* buffer, TF_Status* status) {
  auto* f = static_cast<File*>(file->plugin_file);
  tfoy_read_fn read = g_read.load();
  if (read == nullptr) {
    TF_SetStatus(status, TF_FAILED_PRECONDITION, "tfoy HDFS bridge: no reader registered (interpreter exiting?)");
    return -1;
  }
  std::lock_guard<std::mutex> lock(f->mu);
  if (f->code != TF_OK) {
    // A reader that ignores errors (checked CSV) would retry a failing file forever: a tracked file just ends,
    // and its error reaches hdfs_io through the done callback.
    TF_SetStatus(status, f->tracked ? TF_OUT_OF_RANGE : f->code, f->error.c_str());
    return f->tracked ? 0 : -1;
  }
  char err[kErrLen] = {0};
  int64_t got = read(f->handle, offset, n, buffer, err, sizeof err);
  if (got < 0) {
    SetStatusFromCallback(got, err, status);
    f->code = TF_GetCode(status);
    f->error = TF_Message(status);
    if (f->tracked) TF_SetStatus(status, TF_OUT_OF_RANGE, f->error.c_str());
    return f->tracked ? 0 : -1;
  }
  f->bytes += got;
  if (!f->walk && got > 0 && offset == f->bytes - got) {  // raw streams read in order: count their lines
    const char* end = buffer + got;
    for (const char* p = buffer; (p = static_cast<const char*>(std::memchr(p, '\n', end - p))) != nullptr; ++p) {
      ++f->newlines;
    }
    f->last = buffer[got - 1];
  }
  if (f->walk && !f->rec.off) {
    if (offset != f->rec.pos) {
      f->rec.off = true;
    } else {
      std::string bad = f->rec.Feed(reinterpret_cast<const uint8_t*>(buffer), static_cast<size_t>(got));
      if (bad.empty() && offset + got >= static_cast<uint64_t>(f->size)) bad = f->rec.End(f->size);
      if (!bad.empty()) {
        f->error = f->uri + ": " + bad;
        f->code = TF_DATA_LOSS;
        TF_SetStatus(status, TF_DATA_LOSS, f->error.c_str());
        return -1;
      }
    }
  }
  if (static_cast<size_t>(got) < n) {
    TF_SetStatus(status, TF_OUT_OF_RANGE, "read past the end of the file");
  } else {
    TF_SetStatus(status, TF_OK, "");
  }
  return got;
}

// ---- filesystem -------------------------------------------------------------------------------------------------

void Init(TF_Filesystem* fs, TF_Status* status) {
  fs->plugin_filesystem = nullptr;
  TF_SetStatus(status, TF_OK, "");
}

void Cleanup(TF_Filesystem*) {}

void NewRandomAccessFile(const TF_Filesystem*, const char* path, TF_RandomAccessFile* file, TF_Status* status) {
  tfoy_open_fn open = g_open.load();
  if (open == nullptr) {
    TF_SetStatus(status, TF_FAILED_PRECONDITION, "tfoy HDFS bridge: no reader registered");
    return;
  }
  char err[kErrLen] = {0};
  int64_t size = 0;
  int64_t handle = open(path, &size, err, sizeof err);
  auto* f = new File();
  f->handle = handle;
  f->size = handle < 0 ? 0 : size;
  f->name = path;
  f->uri = UriOf(path);
  f->walk = std::strncmp(path, "tfoyrec://", 10) == 0;
  f->bridge = f->walk || std::strncmp(path, "tfoyraw://", 10) == 0;
  const char* token = std::strstr(path, "://");
  const char* slash = token ? std::strchr(token + 3, '/') : nullptr;
  f->tracked = f->bridge && slash != nullptr && std::memchr(token + 3, '.', slash - (token + 3)) != nullptr;
  if (handle < 0) {
    SetStatusFromCallback(handle, err, status);
    f->code = TF_GetCode(status);
    f->error = TF_Message(status);
    if (!f->tracked) {
      delete f;
      return;
    }
  }
  file->plugin_file = f;
  TF_SetStatus(status, TF_OK, "");
}

int64_t GetFileSize(const TF_Filesystem*, const char* path, TF_Status* status) {
  tfoy_open_fn open = g_open.load();
  tfoy_close_fn close = g_close.load();
  if (open == nullptr || close == nullptr) {
    TF_SetStatus(status, TF_FAILED_PRECONDITION, "tfoy HDFS bridge: no reader registered");
    return -1;
  }
  char err[kErrLen] = {0};
  int64_t size = 0;
  int64_t handle = open(path, &size, err, sizeof err);
  if (handle < 0) {
    SetStatusFromCallback(handle, err, status);
    return -1;
  }
  close(handle);
  TF_SetStatus(status, TF_OK, "");
  return size;
}

void PathExists(const TF_Filesystem* fs, const char* path, TF_Status* status) { GetFileSize(fs, path, status); }

void Stat(const TF_Filesystem* fs, const char* path, TF_FileStatistics* stats, TF_Status* status) {
  stats->length = GetFileSize(fs, path, status);
  stats->mtime_nsec = 0;
  stats->is_directory = false;
}


// ---- hdfs:// and viewfs://: the whole filesystem ----------------------------------------------------------------

void* Allocate(size_t size) { return std::calloc(1, size); }

const tfoy_fs_ops* FsOps(TF_Status* status) {
  const tfoy_fs_ops* ops = g_fs.load();
  if (ops == nullptr) {
    TF_SetStatus(status, TF_FAILED_PRECONDITION,
                 "tfoy: hdfs:// and viewfs:// need hdfs_io's Rust HDFS reader, which is not built or not loaded "
                 "(./build.sh setup builds it; `import hdfs_io` loads it)");
  }
  return ops;
}

// A callback's answer: true when it succeeded; else the status carries its code and message.
bool Ok(int64_t code, const char* err, TF_Status* status) {
  if (code < 0) {
    SetStatusFromCallback(code, err, status);
    return false;
  }
  TF_SetStatus(status, TF_OK, "");
  return true;
}

struct Writer {
  int64_t handle;
  uint64_t pos;  // what Tell() answers: the file's length when opened for append, plus what was appended
};

void WriterCleanup(TF_WritableFile* file) {
  auto* w = static_cast<Writer*>(file->plugin_file);
  if (const tfoy_fs_ops* ops = g_fs.load()) ops->abort(w->handle);  // nothing left to do after a Close
  delete w;
}

void WriterAppend(const TF_WritableFile* file, const char* buffer, size_t n, TF_Status* status) {
  auto* w = static_cast<Writer*>(file->plugin_file);
  const tfoy_fs_ops* ops = FsOps(status);
  char err[kErrLen] = {0};
  if (ops != nullptr && Ok(ops->write(w->handle, buffer, n, err, sizeof err), err, status)) w->pos += n;
}

int64_t WriterTell(const TF_WritableFile* file, TF_Status* status) {
  TF_SetStatus(status, TF_OK, "");
  return static_cast<int64_t>(static_cast<Writer*>(file->plugin_file)->pos);
}

void WriterFlushOrSync(const TF_WritableFile* file, int32_t sync, TF_Status* status) {
  const tfoy_fs_ops* ops = FsOps(status);
  char err[kErrLen] = {0};
  if (ops != nullptr) Ok(ops->flush(static_cast<Writer*>(file->plugin_file)->handle, sync, err, sizeof err), err, status);
}

void WriterFlush(const TF_WritableFile* file, TF_Status* status) { WriterFlushOrSync(file, 0, status); }

void WriterSync(const TF_WritableFile* file, TF_Status* status) { WriterFlushOrSync(file, 1, status); }

void WriterClose(const TF_WritableFile* file, TF_Status* status) {
  const tfoy_fs_ops* ops = FsOps(status);
  char err[kErrLen] = {0};
  if (ops != nullptr) Ok(ops->close(static_cast<Writer*>(file->plugin_file)->handle, err, sizeof err), err, status);
}

void OpenWriter(const char* path, int32_t append, TF_WritableFile* file, TF_Status* status) {
  const tfoy_fs_ops* ops = FsOps(status);
  if (ops == nullptr) return;
  char err[kErrLen] = {0};
  int64_t size = 0;
  int64_t handle = ops->create(path, append, &size, err, sizeof err);
  if (Ok(handle, err, status)) file->plugin_file = new Writer{handle, static_cast<uint64_t>(size)};
}

void NewWritableFile(const TF_Filesystem*, const char* path, TF_WritableFile* file, TF_Status* status) {
  OpenWriter(path, 0, file, status);
}

void NewAppendableFile(const TF_Filesystem*, const char* path, TF_WritableFile* file, TF_Status* status) {
  OpenWriter(path, 1, file, status);
}

bool HadoopStat(const char* path, tfoy_file_stat* st, TF_Status* status) {
  const tfoy_fs_ops* ops = FsOps(status);
  char err[kErrLen] = {0};
  return ops != nullptr && Ok(ops->stat(path, st, err, sizeof err), err, status);
}

void HadoopStatOp(const TF_Filesystem*, const char* path, TF_FileStatistics* stats, TF_Status* status) {
  tfoy_file_stat st{};
  if (!HadoopStat(path, &st, status)) return;
  stats->length = st.length;
  stats->mtime_nsec = st.mtime_nsec;
  stats->is_directory = st.is_dir != 0;
}

void HadoopPathExists(const TF_Filesystem*, const char* path, TF_Status* status) {
  tfoy_file_stat st{};
  HadoopStat(path, &st, status);
}

int64_t HadoopFileSize(const TF_Filesystem*, const char* path, TF_Status* status) {
  tfoy_file_stat st{};
  if (!HadoopStat(path, &st, status)) return -1;
  if (st.is_dir) {
    TF_SetStatus(status, TF_FAILED_PRECONDITION, (std::string(path) + ": is a directory").c_str());
    return -1;
  }
  return st.length;
}

bool HadoopIsDirectory(const TF_Filesystem*, const char* path, TF_Status* status) {
  tfoy_file_stat st{};
  if (!HadoopStat(path, &st, status)) return false;
  if (!st.is_dir) TF_SetStatus(status, TF_FAILED_PRECONDITION, (std::string(path) + ": not a directory").c_str());
  return st.is_dir != 0;
}

void AddName(void* ctx, const char* name) { static_cast<std::vector<std::string>*>(ctx)->emplace_back(name); }

int HadoopGetChildren(const TF_Filesystem*, const char* path, char*** entries, TF_Status* status) {
  const tfoy_fs_ops* ops = FsOps(status);
  if (ops == nullptr) return -1;
  std::vector<std::string> names;
  char err[kErrLen] = {0};
  if (!Ok(ops->list(path, AddName, &names, err, sizeof err), err, status)) return -1;
  *entries = static_cast<char**>(Allocate(std::max<size_t>(names.size(), 1) * sizeof(char*)));
  for (size_t i = 0; i < names.size(); ++i) (*entries)[i] = strdup(names[i].c_str());
  return static_cast<int>(names.size());
}

void Mkdirs(const char* path, int32_t parents, TF_Status* status) {
  const tfoy_fs_ops* ops = FsOps(status);
  char err[kErrLen] = {0};
  if (ops != nullptr) Ok(ops->mkdirs(path, parents, err, sizeof err), err, status);
}

void HadoopCreateDir(const TF_Filesystem*, const char* path, TF_Status* status) { Mkdirs(path, 0, status); }

void HadoopRecursivelyCreateDir(const TF_Filesystem*, const char* path, TF_Status* status) {
  Mkdirs(path, 1, status);
}

bool Remove(const char* path, int32_t mode, TF_Status* status) {
  const tfoy_fs_ops* ops = FsOps(status);
  char err[kErrLen] = {0};
  return ops != nullptr && Ok(ops->remove(path, mode, err, sizeof err), err, status);
}

void HadoopDeleteFile(const TF_Filesystem*, const char* path, TF_Status* status) { Remove(path, 0, status); }

void HadoopDeleteDir(const TF_Filesystem*, const char* path, TF_Status* status) { Remove(path, 1, status); }

void HadoopDeleteRecursively(const TF_Filesystem*, const char* path, uint64_t* undeleted_files,
                             uint64_t* undeleted_dirs, TF_Status* status) {
  // one NameNode operation deletes the whole tree, or nothing
  bool done = Remove(path, 2, status);
  *undeleted_files = 0;
  *undeleted_dirs = done ? 0 : 1;
}

void HadoopRename(const TF_Filesystem*, const char* src, const char* dst, TF_Status* status) {
  const tfoy_fs_ops* ops = FsOps(status);
  char err[kErrLen] = {0};
  if (ops != nullptr) Ok(ops->rename(src, dst, err, sizeof err), err, status);
}

char* TranslateName(const TF_Filesystem*, const char* uri) { return strdup(uri); }

// "hdfs://nn:8020/a//b/./c/../d/" -> "hdfs://nn:8020/a/b/d": TF's own translation would keep the path alone, and
// HDFS refuses empty or "." path components.
char* HadoopTranslateName(const TF_Filesystem*, const char* uri) {
  std::string name(uri);
  size_t at = name.find("://");
  if (at == std::string::npos) return strdup(uri);
  size_t slash = name.find('/', at + 3);
  std::string out = name.substr(0, slash == std::string::npos ? name.size() : slash);
  std::vector<std::string> parts;
  for (size_t i = slash; i != std::string::npos && i < name.size();) {
    size_t next = name.find('/', i + 1);
    std::string part = name.substr(i + 1, next == std::string::npos ? std::string::npos : next - i - 1);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = next;
  }
  for (const std::string& part : parts) out += "/" + part;
  if (parts.empty()) out += "/";
  return strdup(out.c_str());
}

}  // namespace

extern "C" {

// Called by hdfs_io/tf_bridge.py through ctypes, with the Rust reader's functions or Python callbacks; null
// pointers make every read fail cleanly.
__attribute__((visibility("default"))) void tfoy_bridge_set_callbacks(tfoy_open_fn open, tfoy_read_fn read,
                                                                      tfoy_close_fn close, tfoy_done_fn done) {
  g_open.store(open);
  g_read.store(read);
  g_close.store(close);
  g_done.store(done);
}

// The rest of the filesystem, for hdfs:// and viewfs:// (null: they answer FAILED_PRECONDITION).
__attribute__((visibility("default"))) void tfoy_bridge_set_fs_ops(const tfoy_fs_ops* ops) { g_fs.store(ops); }

__attribute__((visibility("default"))) void TF_InitPlugin(TF_FilesystemPluginInfo* info) {
  InitTable();
  if (__builtin_cpu_supports("sse4.2")) g_extend = ExtendSse42;
  static const char* const kSchemes[] = {"tfoyraw", "tfoyrec", "hdfs", "viewfs"};
  constexpr size_t kNum = sizeof kSchemes / sizeof kSchemes[0];
  info->plugin_memory_allocate = Allocate;
  info->plugin_memory_free = std::free;
  info->num_schemes = kNum;
  info->ops = static_cast<TF_FilesystemPluginOps*>(Allocate(kNum * sizeof(TF_FilesystemPluginOps)));
  for (size_t i = 0; i < kNum; ++i) {
    TF_FilesystemPluginOps* ops = &info->ops[i];
    bool hadoop = i >= 2;
    TF_SetFilesystemVersionMetadata(ops);
    ops->scheme = strdup(kSchemes[i]);
    ops->random_access_file_ops = static_cast<TF_RandomAccessFileOps*>(Allocate(TF_RANDOM_ACCESS_FILE_OPS_SIZE));
    ops->random_access_file_ops->cleanup = FileCleanup;
    ops->random_access_file_ops->read = FileRead;
    TF_FilesystemOps* fs = ops->filesystem_ops = static_cast<TF_FilesystemOps*>(Allocate(TF_FILESYSTEM_OPS_SIZE));
    fs->init = Init;
    fs->cleanup = Cleanup;
    fs->new_random_access_file = NewRandomAccessFile;
    if (!hadoop) {  // private names: reading only, the name kept whole
      fs->get_file_size = GetFileSize;
      fs->path_exists = PathExists;
      fs->stat = Stat;
      fs->translate_name = TranslateName;
      continue;
    }
    fs->translate_name = HadoopTranslateName;
    ops->writable_file_ops = static_cast<TF_WritableFileOps*>(Allocate(TF_WRITABLE_FILE_OPS_SIZE));
    ops->writable_file_ops->cleanup = WriterCleanup;
    ops->writable_file_ops->append = WriterAppend;
    ops->writable_file_ops->tell = WriterTell;
    ops->writable_file_ops->flush = WriterFlush;
    ops->writable_file_ops->sync = WriterSync;
    ops->writable_file_ops->close = WriterClose;
    fs->new_writable_file = NewWritableFile;
    fs->new_appendable_file = NewAppendableFile;
    fs->path_exists = HadoopPathExists;
    fs->stat = HadoopStatOp;
    fs->get_file_size = HadoopFileSize;
    fs->is_directory = HadoopIsDirectory;
    fs->get_children = HadoopGetChildren;
    fs->create_dir = HadoopCreateDir;
    fs->recursively_create_dir = HadoopRecursivelyCreateDir;
    fs->delete_file = HadoopDeleteFile;
    fs->delete_dir = HadoopDeleteDir;
    fs->delete_recursively = HadoopDeleteRecursively;
    fs->rename_file = HadoopRename;
  }
}

}  // extern "C"
