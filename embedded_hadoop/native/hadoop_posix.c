/* libhadoop.so for the embedded secure NodeManager: the part of Hadoop's native library that a Kerberized
 * NodeManager cannot run without, written for Hadoop 3.5's Java declarations.
 *
 * Why: with security on, a NodeManager reads container logs (to serve them, and to aggregate them to HDFS) through
 * SecureIOUtils, which refuses to work unless NativeIO is loaded, because it checks each log file's owner with
 * fstat(2) before handing it out. Apache ships libhadoop.so only in its binary tarball; Maven has no build that
 * loads into 3.5. Real clusters install theirs; the embedded one builds this (embedded_hadoop/native_shim.py) and
 * puts it on the NodeManager's java.library.path only.
 *
 * What is here: the calls a NodeManager makes once NativeIO reports itself loaded: POSIX stat/fstat/chmod/open,
 * rename/link, fadvise/sync_file_range, user and group names, a user's groups, the memlock limit, and CRC32/CRC32C
 * checksums for the HDFS client inside it (NativeCrc32 is used as soon as the library loads). Everything else (compression
 * codecs, OpenSSL, ISA-L, PMDK, domain sockets) reports "not built", so Hadoop keeps its Java code for those.
 * Every call is the system's own; nothing is pretended.
 */
#define _GNU_SOURCE /* sync_file_range */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jni.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define NATIVEIO(name) Java_org_apache_hadoop_io_nativeio_NativeIO_##name
#define POSIX(name) Java_org_apache_hadoop_io_nativeio_NativeIO_00024POSIX_##name
#define LOADER(name) Java_org_apache_hadoop_util_NativeCodeLoader_##name
#define CRC(name) Java_org_apache_hadoop_util_NativeCrc32_##name

/* ---- errors: Hadoop's NativeIOException(String, Errno) when the Errno enum has the name, else IOException ---- */

static const char *errno_name(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ELOOP: return "ELOOP";
    default: return "UNKNOWN";
  }
}

static void throw_errno(JNIEnv *env, int err, const char *what) {
  char msg[1024];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  jclass errno_cls = (*env)->FindClass(env, "org/apache/hadoop/io/nativeio/Errno");
  jclass exc_cls = (*env)->FindClass(env, "org/apache/hadoop/io/nativeio/NativeIOException");
  if (errno_cls && exc_cls) {
    jfieldID fid = (*env)->GetStaticFieldID(env, errno_cls, errno_name(err), "Lorg/apache/hadoop/io/nativeio/Errno;");
    jmethodID ctor = (*env)->GetMethodID(env, exc_cls, "<init>", "(Ljava/lang/String;Lorg/apache/hadoop/io/nativeio/Errno;)V");
    if (fid && ctor) {
      jobject code = (*env)->GetStaticObjectField(env, errno_cls, fid);
      jobject exc = (*env)->NewObject(env, exc_cls, ctor, (*env)->NewStringUTF(env, msg), code);
      if (exc) (*env)->Throw(env, (jthrowable)exc);
      return;
    }
  }
  (*env)->ExceptionClear(env);
  (*env)->ThrowNew(env, (*env)->FindClass(env, "java/io/IOException"), msg);
}

static int fd_of(JNIEnv *env, jobject fd_obj) {
  jclass cls = (*env)->FindClass(env, "java/io/FileDescriptor");
  return (*env)->GetIntField(env, fd_obj, (*env)->GetFieldID(env, cls, "fd", "I"));
}

/* ---- NativeCodeLoader: which optional parts this build has (none) ---- */

JNIEXPORT jboolean JNICALL LOADER(buildSupportsIsal)(JNIEnv *env, jclass cls) { return JNI_FALSE; }
JNIEXPORT jboolean JNICALL LOADER(buildSupportsZstd)(JNIEnv *env, jclass cls) { return JNI_FALSE; }
JNIEXPORT jboolean JNICALL LOADER(buildSupportsOpenssl)(JNIEnv *env, jclass cls) { return JNI_FALSE; }
JNIEXPORT jstring JNICALL LOADER(getLibraryName)(JNIEnv *env, jclass cls) {
  return (*env)->NewStringUTF(env, "libhadoop.so (tfoy embedded NodeManager build: POSIX and CRC only)");
}

/* ---- NativeIO ---- */

JNIEXPORT void JNICALL NATIVEIO(initNative)(JNIEnv *env, jclass cls, jboolean workaround) {}

JNIEXPORT jlong JNICALL NATIVEIO(getMemlockLimit0)(JNIEnv *env, jclass cls) {
  struct rlimit rlim;
  if (getrlimit(RLIMIT_MEMLOCK, &rlim)) return 0;
  return rlim.rlim_cur == RLIM_INFINITY ? INT64_MAX : (jlong)rlim.rlim_cur;
}

static void two_paths(JNIEnv *env, jstring a, jstring b, int (*call)(const char *, const char *), const char *what) {
  const char *pa = (*env)->GetStringUTFChars(env, a, NULL);
  const char *pb = (*env)->GetStringUTFChars(env, b, NULL);
  if (pa && pb && call(pa, pb)) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s(%s, %s)", what, pa, pb);
    throw_errno(env, errno, msg);
  }
  if (pa) (*env)->ReleaseStringUTFChars(env, a, pa);
  if (pb) (*env)->ReleaseStringUTFChars(env, b, pb);
}

JNIEXPORT void JNICALL NATIVEIO(renameTo0)(JNIEnv *env, jclass cls, jstring src, jstring dst) {
  two_paths(env, src, dst, rename, "rename");
}

JNIEXPORT void JNICALL NATIVEIO(link0)(JNIEnv *env, jclass cls, jstring src, jstring dst) {
  two_paths(env, src, dst, link, "link");
}

/* ---- NativeIO.POSIX ---- */

static void set_static_int(JNIEnv *env, jclass cls, const char *name, int value) {
  jfieldID fid = (*env)->GetStaticFieldID(env, cls, name, "I");
  if (fid) (*env)->SetStaticIntField(env, cls, fid, value);
  (*env)->ExceptionClear(env);
}

/* The O_* / POSIX_FADV_* / SYNC_FILE_RANGE_* constants start as -1 in Java; the library gives them their values. */
JNIEXPORT void JNICALL POSIX(initNativePosix)(JNIEnv *env, jclass cls, jboolean workaround) {
  static const struct { const char *name; int value; } kConsts[] = {
      {"O_RDONLY", O_RDONLY}, {"O_WRONLY", O_WRONLY}, {"O_RDWR", O_RDWR}, {"O_CREAT", O_CREAT},
      {"O_EXCL", O_EXCL}, {"O_NOCTTY", O_NOCTTY}, {"O_TRUNC", O_TRUNC}, {"O_APPEND", O_APPEND},
      {"O_NONBLOCK", O_NONBLOCK}, {"O_SYNC", O_SYNC}, {"POSIX_FADV_NORMAL", POSIX_FADV_NORMAL},
      {"POSIX_FADV_RANDOM", POSIX_FADV_RANDOM}, {"POSIX_FADV_SEQUENTIAL", POSIX_FADV_SEQUENTIAL},
      {"POSIX_FADV_WILLNEED", POSIX_FADV_WILLNEED}, {"POSIX_FADV_DONTNEED", POSIX_FADV_DONTNEED},
      {"POSIX_FADV_NOREUSE", POSIX_FADV_NOREUSE}, {"SYNC_FILE_RANGE_WAIT_BEFORE", SYNC_FILE_RANGE_WAIT_BEFORE},
      {"SYNC_FILE_RANGE_WRITE", SYNC_FILE_RANGE_WRITE}, {"SYNC_FILE_RANGE_WAIT_AFTER", SYNC_FILE_RANGE_WAIT_AFTER},
  };
  for (size_t i = 0; i < sizeof kConsts / sizeof kConsts[0]; ++i) set_static_int(env, cls, kConsts[i].name, kConsts[i].value);
}

static jobject new_stat(JNIEnv *env, const struct stat *st) {
  jclass cls = (*env)->FindClass(env, "org/apache/hadoop/io/nativeio/NativeIO$POSIX$Stat");
  if (!cls) return NULL;
  jmethodID ctor = (*env)->GetMethodID(env, cls, "<init>", "(III)V");
  if (!ctor) return NULL;
  return (*env)->NewObject(env, cls, ctor, (jint)st->st_uid, (jint)st->st_gid, (jint)st->st_mode);
}

JNIEXPORT jobject JNICALL POSIX(fstat)(JNIEnv *env, jclass cls, jobject fd_obj) {
  struct stat st;
  if (fstat(fd_of(env, fd_obj), &st)) {
    throw_errno(env, errno, "fstat");
    return NULL;
  }
  return new_stat(env, &st);
}

JNIEXPORT jobject JNICALL POSIX(stat)(JNIEnv *env, jclass cls, jstring path) {
  const char *p = (*env)->GetStringUTFChars(env, path, NULL);
  if (!p) return NULL;
  struct stat st;
  jobject out = NULL;
  if (stat(p, &st)) {
    char msg[600];
    snprintf(msg, sizeof msg, "stat(%s)", p);
    throw_errno(env, errno, msg);
  } else {
    out = new_stat(env, &st);
  }
  (*env)->ReleaseStringUTFChars(env, path, p);
  return out;
}

JNIEXPORT void JNICALL POSIX(chmodImpl)(JNIEnv *env, jclass cls, jstring path, jint mode) {
  const char *p = (*env)->GetStringUTFChars(env, path, NULL);
  if (!p) return;
  if (chmod(p, (mode_t)mode)) {
    char msg[600];
    snprintf(msg, sizeof msg, "chmod(%s)", p);
    throw_errno(env, errno, msg);
  }
  (*env)->ReleaseStringUTFChars(env, path, p);
}

JNIEXPORT jobject JNICALL POSIX(open)(JNIEnv *env, jclass cls, jstring path, jint flags, jint mode) {
  const char *p = (*env)->GetStringUTFChars(env, path, NULL);
  if (!p) return NULL;
  int fd = open(p, flags | O_CLOEXEC, (mode_t)mode);
  jobject out = NULL;
  if (fd < 0) {
    char msg[600];
    snprintf(msg, sizeof msg, "open(%s)", p);
    throw_errno(env, errno, msg);
  } else {
    jclass fd_cls = (*env)->FindClass(env, "java/io/FileDescriptor");
    out = (*env)->NewObject(env, fd_cls, (*env)->GetMethodID(env, fd_cls, "<init>", "()V"));
    if (out) (*env)->SetIntField(env, out, (*env)->GetFieldID(env, fd_cls, "fd", "I"), fd);
    else close(fd);
  }
  (*env)->ReleaseStringUTFChars(env, path, p);
  return out;
}

JNIEXPORT void JNICALL POSIX(posix_1fadvise)(JNIEnv *env, jclass cls, jobject fd_obj, jlong off, jlong len, jint advice) {
  int err = posix_fadvise(fd_of(env, fd_obj), off, len, advice);
  if (err) throw_errno(env, err, "posix_fadvise");
}

JNIEXPORT void JNICALL POSIX(sync_1file_1range)(JNIEnv *env, jclass cls, jobject fd_obj, jlong off, jlong len, jint flags) {
  if (sync_file_range(fd_of(env, fd_obj), off, len, (unsigned)flags)) throw_errno(env, errno, "sync_file_range");
}

JNIEXPORT jlong JNICALL POSIX(getUIDforFDOwnerforOwner)(JNIEnv *env, jclass cls, jobject fd_obj) {
  struct stat st;
  if (fstat(fd_of(env, fd_obj), &st)) {
    throw_errno(env, errno, "fstat");
    return -1;
  }
  return st.st_uid;
}

/* A name for an id, as `ls -l` gives it: the number itself when the id has no entry. */
static jstring id_name(JNIEnv *env, long id, int user) {
  char buf[16384], name[64];
  const char *found = NULL;
  if (user) {
    struct passwd pw, *res = NULL;
    if (getpwuid_r((uid_t)id, &pw, buf, sizeof buf, &res) == 0 && res) found = res->pw_name;
  } else {
    struct group gr, *res = NULL;
    if (getgrgid_r((gid_t)id, &gr, buf, sizeof buf, &res) == 0 && res) found = res->gr_name;
  }
  if (!found) {
    snprintf(name, sizeof name, "%ld", id);
    found = name;
  }
  return (*env)->NewStringUTF(env, found);
}

JNIEXPORT jstring JNICALL POSIX(getUserName__J)(JNIEnv *env, jclass cls, jlong uid) { return id_name(env, (long)uid, 1); }
JNIEXPORT jstring JNICALL POSIX(getUserName__I)(JNIEnv *env, jclass cls, jint uid) { return id_name(env, (long)(unsigned)uid, 1); }
JNIEXPORT jstring JNICALL POSIX(getGroupName)(JNIEnv *env, jclass cls, jint gid) { return id_name(env, (long)(unsigned)gid, 0); }

JNIEXPORT jstring JNICALL POSIX(getPmdkLibPath)(JNIEnv *env, jclass cls) { return NULL; }

/* ---- JniBasedUnixGroupsMapping (Hadoop's default group mapping uses it once the library loads) ---- */

#define GROUPS(name) Java_org_apache_hadoop_security_JniBasedUnixGroupsMapping_##name

JNIEXPORT void JNICALL GROUPS(anchorNative)(JNIEnv *env, jclass cls) {}

/* The user's groups by name, primary first, as `id -Gn`; none for a user the system does not know. */
JNIEXPORT jobjectArray JNICALL GROUPS(getGroupsForUser)(JNIEnv *env, jclass cls, jstring user) {
  jclass string_cls = (*env)->FindClass(env, "java/lang/String");
  const char *name = (*env)->GetStringUTFChars(env, user, NULL);
  if (!name) return NULL;
  char buf[16384];
  struct passwd pw, *res = NULL;
  gid_t gids[1024];
  int n = sizeof gids / sizeof gids[0];
  if (getpwnam_r(name, &pw, buf, sizeof buf, &res) != 0 || !res || getgrouplist(name, res->pw_gid, gids, &n) < 0) n = 0;
  (*env)->ReleaseStringUTFChars(env, user, name);
  jobjectArray out = (*env)->NewObjectArray(env, n, string_cls, NULL);
  for (int i = 0; out && i < n; ++i) {
    jstring g = id_name(env, (long)gids[i], 0);
    if (!g) return NULL;
    (*env)->SetObjectArrayElement(env, out, i, g);
    (*env)->DeleteLocalRef(env, g);
  }
  return out;
}

/* ---- NativeCrc32: Hadoop's checksum types 1 (CRC32, zlib's) and 2 (CRC32C, Castagnoli), big-endian sums ---- */

static uint32_t crc_table[2][256];

static void init_tables(void) {
  static const uint32_t kPoly[2] = {0xEDB88320u, 0x82F63B78u};
  for (int t = 0; t < 2; ++t) {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly[t] : c >> 1;
      crc_table[t][i] = c;
    }
  }
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(const uint8_t *p, size_t n) {
  uint64_t c = 0xFFFFFFFFu;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c = __builtin_ia32_crc32di(c, v);
  }
  uint32_t c32 = (uint32_t)c;
  for (; n; --n, ++p) c32 = __builtin_ia32_crc32qi(c32, *p);
  return ~c32;
}

static uint32_t crc_of(int type, const uint8_t *p, size_t n) {
  static int hw = -1;
  if (hw < 0) {
    init_tables();
    hw = __builtin_cpu_supports("sse4.2");
  }
  if (type == 2 && hw) return crc32c_hw(p, n);
  const uint32_t *table = crc_table[type == 2];
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return ~c;
}

__attribute__((constructor)) static void load(void) { (void)crc_of(1, (const uint8_t *)"", 0); }

static void throw_checksum(JNIEnv *env, jstring file, long long pos, uint32_t expected, uint32_t got) {
  const char *name = file ? (*env)->GetStringUTFChars(env, file, NULL) : NULL;
  char msg[1024];
  snprintf(msg, sizeof msg, "Checksum error: %s at %lld exp: %d got: %d", name ? name : "(unknown)", pos,
           (int)expected, (int)got);
  if (name) (*env)->ReleaseStringUTFChars(env, file, name);
  jclass cls = (*env)->FindClass(env, "org/apache/hadoop/fs/ChecksumException");
  if (!cls) return;
  jmethodID ctor = (*env)->GetMethodID(env, cls, "<init>", "(Ljava/lang/String;J)V");
  jobject exc = ctor ? (*env)->NewObject(env, cls, ctor, (*env)->NewStringUTF(env, msg), (jlong)pos) : NULL;
  if (exc) (*env)->Throw(env, (jthrowable)exc);
}

/* One sum per bytes_per_sum bytes of data (the last chunk may be short): written, or with verify compared. Returns
 * 0, or 1 with the first mismatch in *bad, or -1 for arguments Hadoop never passes. Makes no JNI call, so that it
 * can run while array elements are held. */
struct mismatch { long long offset; uint32_t want, got; };

static int chunked_sums(int bytes_per_sum, int type, uint8_t *sums, const uint8_t *data, int length, int verify,
                        struct mismatch *bad) {
  if ((type != 1 && type != 2) || bytes_per_sum <= 0) return -1;
  for (int off = 0, i = 0; off < length; off += bytes_per_sum, ++i) {
    int n = length - off < bytes_per_sum ? length - off : bytes_per_sum;
    uint32_t c = crc_of(type, data + off, (size_t)n);
    uint8_t *s = sums + 4 * (size_t)i;
    uint32_t want = ((uint32_t)s[0] << 24) | ((uint32_t)s[1] << 16) | ((uint32_t)s[2] << 8) | s[3];
    if (!verify) {
      s[0] = (uint8_t)(c >> 24), s[1] = (uint8_t)(c >> 16), s[2] = (uint8_t)(c >> 8), s[3] = (uint8_t)c;
    } else if (want != c) {
      bad->offset = off, bad->want = want, bad->got = c;
      return 1;
    }
  }
  return 0;
}

static void report(JNIEnv *env, int result, const struct mismatch *bad, jstring file, long long base) {
  if (result < 0) {
    (*env)->ThrowNew(env, (*env)->FindClass(env, "java/lang/IllegalArgumentException"), "bad checksum arguments");
  } else if (result > 0) {
    throw_checksum(env, file, base + bad->offset, bad->want, bad->got);
  }
}

static uint8_t *direct(JNIEnv *env, jobject buf) {
  uint8_t *p = (uint8_t *)(*env)->GetDirectBufferAddress(env, buf);
  if (!p) (*env)->ThrowNew(env, (*env)->FindClass(env, "java/lang/IllegalArgumentException"), "not a direct buffer");
  return p;
}

static void direct_sums(JNIEnv *env, jint bps, jint type, jobject sums, jint sums_off, jobject data, jint data_off,
                        jint len, jstring file, jlong base, int verify) {
  uint8_t *s = direct(env, sums), *d = s ? direct(env, data) : NULL;
  struct mismatch bad;
  if (s && d) report(env, chunked_sums(bps, type, s + sums_off, d + data_off, len, verify, &bad), &bad, file, base);
}

JNIEXPORT void JNICALL CRC(nativeComputeChunkedSums)(JNIEnv *env, jclass cls, jint bps, jint type, jobject sums,
                                                     jint sums_off, jobject data, jint data_off, jint len,
                                                     jstring file, jlong base, jboolean verify) {
  direct_sums(env, bps, type, sums, sums_off, data, data_off, len, file, base, verify);
}

JNIEXPORT void JNICALL CRC(nativeVerifyChunkedSums)(JNIEnv *env, jclass cls, jint bps, jint type, jobject sums,
                                                    jint sums_off, jobject data, jint data_off, jint len,
                                                    jstring file, jlong base) {
  direct_sums(env, bps, type, sums, sums_off, data, data_off, len, file, base, 1);
}

JNIEXPORT void JNICALL CRC(nativeComputeChunkedSumsByteArray)(JNIEnv *env, jclass cls, jint bps, jint type,
                                                              jbyteArray sums, jint sums_off, jbyteArray data,
                                                              jint data_off, jint len, jstring file, jlong base,
                                                              jboolean verify) {
  uint8_t *s = (*env)->GetPrimitiveArrayCritical(env, sums, NULL);
  uint8_t *d = s ? (*env)->GetPrimitiveArrayCritical(env, data, NULL) : NULL;
  struct mismatch bad;
  int result = s && d ? chunked_sums(bps, type, s + sums_off, d + data_off, len, verify, &bad) : 0;
  if (d) (*env)->ReleasePrimitiveArrayCritical(env, data, d, JNI_ABORT);
  if (s) (*env)->ReleasePrimitiveArrayCritical(env, sums, s, verify ? JNI_ABORT : 0);
  report(env, result, &bad, file, base);
}
