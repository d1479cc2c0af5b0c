// A TensorFlow filesystem plugin that streams files from HDFS into TF's own C++ readers.
//
// TF >= 2.17 has no hdfs:// and tensorflow-io does not load on it. Staging whole files on local disk before TF
// reads them costs a copy and, worse, the time until the first whole file is there. This plugin registers two
// private schemes whose reads are served by hdfs-native: its Rust client (hdfs_reader/, no Python involved) or,
// when that is not built, Python callbacks (hdfs_io/tf_bridge.py). So TF's TFRecordDataset / TextLineDataset read
// HDFS directly, front to back, 1 MiB at a time:
//
//   tfoyraw://<token>/<uri>  the file's bytes, unchanged
//   tfoyrec://<token>/<uri>  the same, for TFRecord files read front to back: the plugin walks the record framing
//                            as bytes pass and checks every length and data CRC32C itself, because TF's errors
//                            ("corrupted record at 592") name neither the file nor the record's offset. A bad
//                            record fails the read with DATA_LOSS naming both. (About 10 ms of CRC per 60 MB.)
//
// The part after "://" is opaque to TF (translate_name keeps the whole name) and is handed to Python as is.
// Only reading is provided: everything else answers UNIMPLEMENTED, and tfoy never exposes these schemes.

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

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
}

namespace {

std::atomic<tfoy_open_fn> g_open{nullptr};
std::atomic<tfoy_read_fn> g_read{nullptr};
std::atomic<tfoy_close_fn> g_close{nullptr};
std::atomic<tfoy_done_fn> g_done{nullptr};

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
  if (tfoy_done_fn done = g_done.load()) {
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
  const char* token = std::strstr(path, "://");
  const char* slash = token ? std::strchr(token + 3, '/') : nullptr;
  f->tracked = slash != nullptr && std::memchr(token + 3, '.', slash - (token + 3)) != nullptr;
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

char* TranslateName(const TF_Filesystem*, const char* uri) { return strdup(uri); }

void* Allocate(size_t size) { return std::calloc(1, size); }

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

__attribute__((visibility("default"))) void TF_InitPlugin(TF_FilesystemPluginInfo* info) {
  InitTable();
  if (__builtin_cpu_supports("sse4.2")) g_extend = ExtendSse42;
  static const char* const kSchemes[] = {"tfoyraw", "tfoyrec"};
  constexpr size_t kNum = sizeof kSchemes / sizeof kSchemes[0];
  info->plugin_memory_allocate = Allocate;
  info->plugin_memory_free = std::free;
  info->num_schemes = kNum;
  info->ops = static_cast<TF_FilesystemPluginOps*>(Allocate(kNum * sizeof(TF_FilesystemPluginOps)));
  for (size_t i = 0; i < kNum; ++i) {
    TF_FilesystemPluginOps* ops = &info->ops[i];
    TF_SetFilesystemVersionMetadata(ops);
    ops->scheme = strdup(kSchemes[i]);
    ops->random_access_file_ops = static_cast<TF_RandomAccessFileOps*>(Allocate(TF_RANDOM_ACCESS_FILE_OPS_SIZE));
    ops->random_access_file_ops->cleanup = FileCleanup;
    ops->random_access_file_ops->read = FileRead;
    ops->filesystem_ops = static_cast<TF_FilesystemOps*>(Allocate(TF_FILESYSTEM_OPS_SIZE));
    ops->filesystem_ops->init = Init;
    ops->filesystem_ops->cleanup = Cleanup;
    ops->filesystem_ops->new_random_access_file = NewRandomAccessFile;
    ops->filesystem_ops->get_file_size = GetFileSize;
    ops->filesystem_ops->path_exists = PathExists;
    ops->filesystem_ops->stat = Stat;
    ops->filesystem_ops->translate_name = TranslateName;
  }
}

}  // extern "C"
