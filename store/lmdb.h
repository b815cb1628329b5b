// Small RAII wrappers over LMDB (monero src/lmdb style): one Env per store, every named DB
// opened once at start, distinct read and write transaction types, map growth on
// MDB_MAP_FULL. Read transactions are short and copy data out; writes are serialised.
#pragma once

#include <lmdb.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>
#include <utility>

#include "oci/result.h"

namespace ocirelay::store::lmdb {

using Dbi = MDB_dbi;

// Operations shared by read and write transactions.
class Txn {
 public:
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  // Copies the value out; nullopt when absent. Other LMDB errors are io_error.
  Result<std::optional<std::string>> get(Dbi dbi, std::string_view key) const;
  // Visits keys starting with `prefix` in order; `fn` returns false to stop.
  Status scan(Dbi dbi, std::string_view prefix,
              const std::function<bool(std::string_view key, std::string_view value)>& fn) const;
  // Visits keys >= `start` in order; `fn` returns false to stop.
  Status scan_from(Dbi dbi, std::string_view start,
                   const std::function<bool(std::string_view key, std::string_view value)>& fn) const;
  Result<std::size_t> count(Dbi dbi) const;
  // The first key >= `start`, with its value (copied); nullopt past the last key. Lets a
  // caller skip through a database (distinct key prefixes) without visiting every key.
  Result<std::optional<std::pair<std::string, std::string>>> seek(Dbi dbi, std::string_view start) const;

  MDB_txn* handle() const { return txn_; }

 protected:
  Txn() = default;
  ~Txn() = default;
  MDB_txn* txn_ = nullptr;
};

class Env;

// A read-only snapshot. Keep it short: it pins old pages until destroyed.
class ReadTxn : public Txn {
 public:
  ~ReadTxn();
  ReadTxn(ReadTxn&&) = delete;

 private:
  friend class Env;
  explicit ReadTxn(std::shared_lock<std::shared_mutex> lock) : lock_(std::move(lock)) {}
  std::shared_lock<std::shared_mutex> lock_;  // blocks map resizing while open
};

// The single write transaction; only Env::write creates one. Aborts itself when destroyed
// uncommitted, also when an exception unwinds through Env::write's callback: a throw never
// leaves LMDB's writer lock held or half a change committed.
class WriteTxn : public Txn {
 public:
  ~WriteTxn();
  WriteTxn(WriteTxn&&) = delete;

  Status put(Dbi dbi, std::string_view key, std::string_view value);
  // Deleting a missing key is not an error.
  Status del(Dbi dbi, std::string_view key);

 private:
  friend class Env;
  WriteTxn() = default;
  bool map_full_ = false;  // a put hit MDB_MAP_FULL: Env::write grows the map and retries
};

class Env {
 public:
  // Opens (creating) the environment in `dir` with the named DBs, runs mdb_reader_check.
  // MDB_NOTLS, default durability (no NOSYNC/WRITEMAP). Errors name the path and cause.
  // `read_only`: MDB_RDONLY, nothing is created (every DB must exist) and write() fails;
  // safe beside a process that writes.
  static Result<std::unique_ptr<Env>> open(const std::filesystem::path& dir,
                                           const std::vector<std::string>& db_names,
                                           std::size_t initial_map_size, bool read_only = false);
  ~Env();
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;

  Dbi dbi(std::string_view name) const;  // REQUIRES: name passed to open()

  // REQUIRES: the calling thread holds no other transaction of this Env.
  Result<std::unique_ptr<ReadTxn>> read() const;
  // Runs `fn` in a write transaction and commits when it returns ok. On MDB_MAP_FULL the
  // transaction is aborted, the map doubled and `fn` run again, so `fn` must be repeatable.
  // REQUIRES: the calling thread holds no other transaction of this Env.
  Status write(const std::function<Status(WriteTxn&)>& fn);

  std::size_t map_size() const;

 private:
  Env() = default;
  Status grow();

  MDB_env* env_ = nullptr;
  std::filesystem::path dir_;
  std::vector<std::pair<std::string, Dbi>> dbis_;
  mutable std::shared_mutex resize_mu_;  // shared: any open txn; unique: mdb_env_set_mapsize
  std::mutex write_mu_;                  // one writer at a time
  bool read_only_ = false;
};

// Maps an LMDB return code to an Error (MDB_MAP_FULL and ENOSPC become no_space).
Error lmdb_error(int rc, std::string context);

}  // namespace ocirelay::store::lmdb
