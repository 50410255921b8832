// A throwaway PostgreSQL server for tests (tests/postgres.sh: Debian's package, initdb into a temporary
// directory, a Unix socket only), and QRAG_START_POSTGRES, which skips a test when PostgreSQL is not installed
// (fails under QRAG_REQUIRE_SHARED=1, as CI sets: CI installs it).
#ifndef QRAG_TESTS_RAG_POSTGRES_SERVER_H_
#define QRAG_TESTS_RAG_POSTGRES_SERVER_H_

#include <libpq-fe.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "tests/test_util.h"

namespace qrag::rag {

// A PostgreSQL server of its own in a temporary directory (Unix socket only).
class PostgresServer {
 public:
  // Empty `why_not`: started. Else why not (PostgreSQL missing: exit 77 of the script).
  explicit PostgresServer(std::string* why_not) {
    const int rc = Script("start");
    if (rc == 77) *why_not = "PostgreSQL is not installed (apt-get install postgresql)";
    else if (rc != 0) *why_not = absl::StrCat("tests/postgres.sh start failed with ", rc);
    else started_ = true;
  }
  ~PostgresServer() {
    if (started_) Script("kill");
  }
  std::string conninfo(const std::string& db = "postgres") const {
    return absl::StrCat("host=", dir_.path(), " port=5432 user=qrag dbname=", db, " connect_timeout=5");
  }
  int Stop() { return Script("stop"); }
  int Start() { return Script("start"); }
  // Runs `sql` on database `db` (ASSERTs inside tests check the result).
  bool Exec(const std::string& sql, const std::string& db = "postgres") const {
    PGconn* c = PQconnectdb(conninfo(db).c_str());
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
      PGresult* r = PQexec(c, sql.c_str());
      ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
      PQclear(r);
    }
    PQfinish(c);
    return ok;
  }
  // The single value `sql` returns ("" when none or on error).
  std::string Value(const std::string& sql, const std::string& db = "postgres") const {
    PGconn* c = PQconnectdb(conninfo(db).c_str());
    std::string v;
    if (PQstatus(c) == CONNECTION_OK) {
      PGresult* r = PQexec(c, sql.c_str());
      if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) v = PQgetvalue(r, 0, 0);
      PQclear(r);
    }
    PQfinish(c);
    return v;
  }

 private:
  int Script(const char* cmd) const {
    const std::string line = absl::StrCat(QRAG_SOURCE_DIR, "/tests/postgres.sh ", cmd, " ", dir_.path(), " >&2");
    const int rc = std::system(line.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  }
  ::qrag::testing::TempDir dir_;
  bool started_ = false;
};

#define QRAG_START_POSTGRES(server)                                                                \
  std::string why_not_##server;                                                                    \
  PostgresServer server(&why_not_##server);                                                        \
  if (!why_not_##server.empty()) {                                                                 \
    if (::qrag::testing::RequireShared()) FAIL() << why_not_##server << " (QRAG_REQUIRE_SHARED=1)"; \
    GTEST_SKIP() << why_not_##server;                                                              \
  }

}  // namespace qrag::rag

#endif  // QRAG_TESTS_RAG_POSTGRES_SERVER_H_
