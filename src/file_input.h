#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace fvc::detail {

/// Size and CRC-64 (ECMA-182, reflected, as ISA-L's `crc64_ecma_refl`) of a file's bytes on
/// disk: what a data set cache records to tell whether its source has changed.
struct FileFingerprint {
  uint64_t size = 0;
  uint64_t crc64 = 0;

  bool operator==(const FileFingerprint& other) const {
    return size == other.size && crc64 == other.crc64;
  }
  bool operator!=(const FileFingerprint& other) const { return !(*this == other); }
};

/// CRC-64 of `size` bytes, continuing from `crc` (0 to start).
uint64_t crc64(uint64_t crc, const void* data, size_t size);

/// Reads all of `path` once and returns its fingerprint. Throws `DataError` naming the file when
/// it cannot be read.
FileFingerprint fingerprint_file(const std::string& path);

/// A file's content read front to back, inflated on the way when the file is gzip.
///
/// As zlib's `gzread` decides, the first two bytes tell: 1f 8b is gzip, anything else is read
/// as it is. Gzip members that follow one another are inflated one after the other; bytes after
/// the last complete member that do not start another are ignored. Inflating streams (ISA-L), so
/// memory stays at a few megabytes whatever the file's size.
class FileInput {
 public:
  /// Opens `path`, which the caller has checked is a readable regular file. Throws `DataError`
  /// ("path: cannot open: <reason>") otherwise. `fingerprint` asks for the CRC-64 of the bytes
  /// on disk as they are read (about 0.1 s of one core per 300 MB).
  FileInput(const std::string& path, bool fingerprint);
  ~FileInput();
  FileInput(const FileInput&) = delete;
  FileInput& operator=(const FileInput&) = delete;

  /// Fills `out` with up to `size` bytes of content, fewer only at the end; returns the count,
  /// 0 once everything was read. Throws `DataError` as `path: cannot read: <reason>`,
  /// `path: cannot decompress: <reason>` or `path: gzip stream ends early, expected a complete
  /// file`.
  size_t read(char* out, size_t size);

  /// Whether the file is gzip.
  bool compressed() const { return compressed_; }

  /// A guess at the content's size, for sizing buffers: the file's size, or for gzip the size
  /// the last member records (modulo 2^32), when that is at least the file's size.
  uint64_t content_size_hint() const { return size_hint_; }

  /// The fingerprint of the bytes read from disk so far; the whole file's once `read` has
  /// returned 0. The CRC-64 is 0 unless asked for.
  FileFingerprint fingerprint() const { return {bytes_on_disk_, crc_}; }

 private:
  size_t read_plain(char* out, size_t size);
  size_t read_gzip(char* out, size_t size);
  size_t read_file(char* out, size_t size);
  bool refill();
  bool start_next_member();
  [[noreturn]] void fail_inflate(int code) const;

  struct Inflater;

  // Closes the file however the object ends, a constructor that throws included.
  struct Descriptor {
    int fd = -1;
    Descriptor() = default;
    Descriptor(const Descriptor&) = delete;
    Descriptor& operator=(const Descriptor&) = delete;
    ~Descriptor();
  };

  std::string path_;
  Descriptor file_;
  bool fingerprint_ = false;
  bool compressed_ = false;
  bool finished_ = false;
  bool member_done_ = false;
  uint64_t size_hint_ = 0;
  uint64_t bytes_on_disk_ = 0;
  uint64_t crc_ = 0;
  std::unique_ptr<unsigned char[]> in_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  bool file_eof_ = false;
  std::unique_ptr<Inflater> inflater_;
};

}  // namespace fvc::detail
