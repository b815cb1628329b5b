// LMDB wrappers: environment, transactions, map growth.
#include "store/lmdb.h"

#include <cerrno>
#include <cstring>

namespace ocirelay::store::lmdb {
namespace {

MDB_val to_val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
std::string_view from_val(const MDB_val& v) {
  return {static_cast<const char*>(v.mv_data), v.mv_size};
}
constexpr int kMaxGrowRetries = 16;

}  // namespace

Error lmdb_error(int rc, std::string context) {
  Errc code = (rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT) ? Errc::no_space : Errc::io_error;
  return Error{code, std::move(context) + ": " + mdb_strerror(rc)};
}

Result<std::optional<std::string>> Txn::get(Dbi dbi, std::string_view key) const {
  MDB_val k = to_val(key), v{};
  int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string>();
  if (rc != 0) return lmdb_error(rc, "lmdb get");
  return std::optional<std::string>(std::string(from_val(v)));
}

Status Txn::scan(Dbi dbi, std::string_view prefix,
                 const std::function<bool(std::string_view, std::string_view)>& fn) const {
  return scan_from(dbi, prefix, [&](std::string_view k, std::string_view v) {
    return k.substr(0, prefix.size()) == prefix && fn(k, v);
  });
}

Status Txn::scan_from(Dbi dbi, std::string_view start,
                      const std::function<bool(std::string_view, std::string_view)>& fn) const {
  MDB_cursor* cur = nullptr;
  int rc = mdb_cursor_open(txn_, dbi, &cur);
  if (rc != 0) return lmdb_error(rc, "lmdb cursor open");
  MDB_val k = to_val(start), v{};
  rc = start.empty() ? mdb_cursor_get(cur, &k, &v, MDB_FIRST)
                     : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (rc == 0) {
    if (!fn(from_val(k), from_val(v))) break;
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "lmdb cursor");
  return {};
}

Result<std::optional<std::pair<std::string, std::string>>> Txn::seek(Dbi dbi,
                                                                    std::string_view start) const {
  MDB_cursor* cur = nullptr;
  int rc = mdb_cursor_open(txn_, dbi, &cur);
  if (rc != 0) return lmdb_error(rc, "lmdb cursor open");
  MDB_val k = to_val(start), v{};
  rc = start.empty() ? mdb_cursor_get(cur, &k, &v, MDB_FIRST) : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  std::optional<std::pair<std::string, std::string>> out;
  if (rc == 0) out.emplace(std::string(from_val(k)), std::string(from_val(v)));
  mdb_cursor_close(cur);
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "lmdb cursor");
  return out;
}

Result<std::size_t> Txn::count(Dbi dbi) const {
  MDB_stat st{};
  int rc = mdb_stat(txn_, dbi, &st);
  if (rc != 0) return lmdb_error(rc, "lmdb stat");
  return static_cast<std::size_t>(st.ms_entries);
}

ReadTxn::~ReadTxn() {
  if (txn_) mdb_txn_abort(txn_);
}

WriteTxn::~WriteTxn() {
  if (txn_) mdb_txn_abort(txn_);
}

Status WriteTxn::put(Dbi dbi, std::string_view key, std::string_view value) {
  MDB_val k = to_val(key), v = to_val(value);
  int rc = mdb_put(txn_, dbi, &k, &v, 0);
  if (rc == MDB_MAP_FULL) map_full_ = true;
  if (rc != 0) return lmdb_error(rc, "lmdb put");
  return {};
}

Status WriteTxn::del(Dbi dbi, std::string_view key) {
  MDB_val k = to_val(key);
  int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_MAP_FULL) map_full_ = true;
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "lmdb del");
  return {};
}

Result<std::unique_ptr<Env>> Env::open(const std::filesystem::path& dir,
                                       const std::vector<std::string>& db_names,
                                       std::size_t initial_map_size, bool read_only) {
  std::unique_ptr<Env> env(new Env());
  env->dir_ = dir;
  env->read_only_ = read_only;
  std::string where = "lmdb " + dir.string();
  int rc = mdb_env_create(&env->env_);
  if (rc != 0) return lmdb_error(rc, where + ": create");
  if ((rc = mdb_env_set_maxdbs(env->env_, static_cast<MDB_dbi>(db_names.size() + 2))) != 0)
    return lmdb_error(rc, where + ": set maxdbs");
  if ((rc = mdb_env_set_maxreaders(env->env_, 512)) != 0)
    return lmdb_error(rc, where + ": set maxreaders");
  // The map size only reserves address space; an existing larger env keeps its own size.
  if ((rc = mdb_env_set_mapsize(env->env_, initial_map_size)) != 0)
    return lmdb_error(rc, where + ": set mapsize");
  const unsigned flags = MDB_NOTLS | (read_only ? MDB_RDONLY : 0u);
  if ((rc = mdb_env_open(env->env_, dir.c_str(), flags, 0644)) != 0)
    return lmdb_error(rc, where + ": open");
  int dead = 0;
  if ((rc = mdb_reader_check(env->env_, &dead)) != 0)
    return lmdb_error(rc, where + ": reader check");

  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(env->env_, nullptr, read_only ? MDB_RDONLY : 0u, &txn)) != 0)
    return lmdb_error(rc, where + ": begin");
  for (const auto& name : db_names) {
    MDB_dbi dbi = 0;
    if ((rc = mdb_dbi_open(txn, name.c_str(), read_only ? 0u : MDB_CREATE, &dbi)) != 0) {
      mdb_txn_abort(txn);
      return lmdb_error(rc, where + ": open db " + name);
    }
    env->dbis_.emplace_back(name, dbi);
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return lmdb_error(rc, where + ": commit");
  return env;
}

Env::~Env() {
  if (env_) mdb_env_close(env_);
}

Dbi Env::dbi(std::string_view name) const {
  for (const auto& [n, d] : dbis_)
    if (n == name) return d;
  std::abort();  // a programming error: every DB is named at open()
}

Result<std::unique_ptr<ReadTxn>> Env::read() const {
  std::unique_ptr<ReadTxn> t(new ReadTxn(std::shared_lock(resize_mu_)));
  int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &t->txn_);
  if (rc != 0) {
    t->txn_ = nullptr;
    return lmdb_error(rc, "lmdb " + dir_.string() + ": begin read");
  }
  return t;
}

Status Env::write(const std::function<Status(WriteTxn&)>& fn) {
  if (read_only_) return Error{Errc::unsupported, "lmdb " + dir_.string() + " is open read-only"};
  std::lock_guard wl(write_mu_);
  for (int attempt = 0;; ++attempt) {
    int rc = 0;
    Status st;
    {
      std::shared_lock rl(resize_mu_);
      WriteTxn t;
      rc = mdb_txn_begin(env_, nullptr, 0, &t.txn_);
      if (rc != 0) return lmdb_error(rc, "lmdb " + dir_.string() + ": begin write");
      st = fn(t);
      if (!st.ok()) {
        mdb_txn_abort(t.txn_);
        t.txn_ = nullptr;
        if (!t.map_full_) return st;
        rc = MDB_MAP_FULL;
      } else {
        rc = mdb_txn_commit(t.txn_);
        t.txn_ = nullptr;
        if (rc == 0) return {};
        if (rc != MDB_MAP_FULL) return lmdb_error(rc, "lmdb " + dir_.string() + ": commit");
      }
    }
    if (attempt >= kMaxGrowRetries) return lmdb_error(rc, "lmdb " + dir_.string());
    if (auto g = grow(); !g.ok()) return g;
  }
}

Status Env::grow() {
  std::unique_lock lk(resize_mu_);  // waits for every open read transaction to end
  MDB_envinfo info{};
  mdb_env_info(env_, &info);
  std::size_t next = info.me_mapsize * 2;
  int rc = mdb_env_set_mapsize(env_, next);
  if (rc != 0) return lmdb_error(rc, "lmdb " + dir_.string() + ": grow map");
  return {};
}

std::size_t Env::map_size() const {
  MDB_envinfo info{};
  mdb_env_info(env_, &info);
  return info.me_mapsize;
}

}  // namespace ocirelay::store::lmdb
