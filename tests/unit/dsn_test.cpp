// tests/unit/dsn_test.cpp: Dsn::parse for every format and error, redacted(), param(), and that
// no message or redacted text ever shows a password.
#include "reservoir/dsn.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "reservoir/error.hpp"

namespace reservoir {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kSecret = "Sup3rS3cret";

// The message of the invalid_argument Error that parsing text throws; fails the test otherwise.
std::string parse_error(const std::string& text) {
  try {
    Dsn::parse(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << text;
    return e.what();
  }
  ADD_FAILURE() << "no error for: " << text;
  return {};
}

TEST(DsnTest, PostgresqlFull) {
  const Dsn d =
      Dsn::parse("postgresql://app:secret@db1:5432/shop?sslmode=require&connect_timeout=3");
  EXPECT_EQ(d.scheme, "postgresql");
  EXPECT_EQ(d.user, "app");
  EXPECT_EQ(d.password, "secret");
  EXPECT_EQ(d.host, "db1");
  EXPECT_EQ(d.port, 5432);
  EXPECT_EQ(d.database, "shop");
  EXPECT_EQ(d.params.size(), 2u);
  EXPECT_EQ(d.param("sslmode"), "require");
  EXPECT_EQ(d.param("connect_timeout"), "3");
  EXPECT_TRUE(d.connection_string.empty());
}

TEST(DsnTest, SchemeAliasesAreFolded) {
  EXPECT_EQ(Dsn::parse("postgres://h/db").scheme, "postgresql");
  EXPECT_EQ(Dsn::parse("POSTGRESQL://h/db").scheme, "postgresql");
  EXPECT_EQ(Dsn::parse("Postgres://h/db").scheme, "postgresql");
  EXPECT_EQ(Dsn::parse("mysql://h/db").scheme, "mariadb");
  EXPECT_EQ(Dsn::parse("MySQL://h/db").scheme, "mariadb");
  EXPECT_EQ(Dsn::parse("mariadb://h/db").scheme, "mariadb");
}

TEST(DsnTest, Mariadb) {
  const Dsn d = Dsn::parse("mariadb://user:secret@db1:3306/shop");
  EXPECT_EQ(d.scheme, "mariadb");
  EXPECT_EQ(d.user, "user");
  EXPECT_EQ(d.password, "secret");
  EXPECT_EQ(d.host, "db1");
  EXPECT_EQ(d.port, 3306);
  EXPECT_EQ(d.database, "shop");
  EXPECT_TRUE(d.params.empty());
}

TEST(DsnTest, GenericScheme) {
  const Dsn d = Dsn::parse("fake://x");
  EXPECT_EQ(d.scheme, "fake");
  EXPECT_EQ(d.host, "x");
  EXPECT_EQ(d.port, 0);
  EXPECT_TRUE(d.user.empty());
  EXPECT_TRUE(d.password.empty());
  EXPECT_TRUE(d.database.empty());
  EXPECT_TRUE(d.params.empty());

  const Dsn e = Dsn::parse("my-db+tls.v2://h:1/d");
  EXPECT_EQ(e.scheme, "my-db+tls.v2");
  EXPECT_EQ(e.port, 1);
}

TEST(DsnTest, OptionalParts) {
  Dsn d = Dsn::parse("postgresql://h");
  EXPECT_EQ(d.host, "h");
  EXPECT_EQ(d.port, 0);
  EXPECT_TRUE(d.database.empty());

  d = Dsn::parse("postgresql:///shop");  // no host: libpq's local socket
  EXPECT_EQ(d.host, "");
  EXPECT_EQ(d.database, "shop");

  d = Dsn::parse("postgresql://h/");
  EXPECT_EQ(d.host, "h");
  EXPECT_TRUE(d.database.empty());

  d = Dsn::parse("postgresql://h?sslmode=disable");
  EXPECT_TRUE(d.database.empty());
  EXPECT_EQ(d.param("sslmode"), "disable");

  d = Dsn::parse("postgresql://app@h:6543");
  EXPECT_EQ(d.user, "app");
  EXPECT_TRUE(d.password.empty());
  EXPECT_EQ(d.port, 6543);

  d = Dsn::parse("postgresql://app:@h");
  EXPECT_EQ(d.user, "app");
  EXPECT_TRUE(d.password.empty());

  d = Dsn::parse("postgresql://:pw@h");
  EXPECT_TRUE(d.user.empty());
  EXPECT_EQ(d.password, "pw");

  d = Dsn::parse("postgresql://:5432/db");
  EXPECT_EQ(d.host, "");
  EXPECT_EQ(d.port, 5432);
}

TEST(DsnTest, PortLimits) {
  EXPECT_EQ(Dsn::parse("x://h:1").port, 1);
  EXPECT_EQ(Dsn::parse("x://h:65535").port, 65535);
  EXPECT_EQ(Dsn::parse("x://h:00080").port, 80);
}

TEST(DsnTest, SurroundingWhitespaceIsIgnored) {
  const Dsn d = Dsn::parse("  \tpostgresql://h/db\n");
  EXPECT_EQ(d.host, "h");
  EXPECT_EQ(d.database, "db");
}

TEST(DsnTest, SqliteAbsolutePath) {
  const Dsn d = Dsn::parse("sqlite:///var/lib/app/app.db?busy_timeout=5000");
  EXPECT_EQ(d.scheme, "sqlite");
  EXPECT_EQ(d.database, "/var/lib/app/app.db");
  EXPECT_EQ(d.param("busy_timeout"), "5000");
  EXPECT_TRUE(d.host.empty());
}

TEST(DsnTest, SqliteRelativePath) {
  const Dsn d = Dsn::parse("sqlite://relative/path.db");
  EXPECT_EQ(d.scheme, "sqlite");
  EXPECT_EQ(d.database, "relative/path.db");
  EXPECT_TRUE(d.host.empty());
  EXPECT_TRUE(d.params.empty());
}

TEST(DsnTest, SqliteMemory) {
  EXPECT_EQ(Dsn::parse("sqlite::memory:").database, ":memory:");
  EXPECT_EQ(Dsn::parse("sqlite://:memory:").database, ":memory:");
  EXPECT_EQ(Dsn::parse("SQLite::memory:").scheme, "sqlite");
  const Dsn d = Dsn::parse("sqlite::memory:?cache=shared");
  EXPECT_EQ(d.database, ":memory:");
  EXPECT_EQ(d.param("cache"), "shared");
}

TEST(DsnTest, SqlitePathIsPercentDecodedAndMayHoldUrlCharacters) {
  const Dsn d = Dsn::parse("sqlite:///tmp/my%20db%3F.db");
  EXPECT_EQ(d.database, "/tmp/my db?.db");
  // '@' and ':' are ordinary in a file path.
  EXPECT_EQ(Dsn::parse("sqlite:///tmp/a@b:c.db").database, "/tmp/a@b:c.db");
}

TEST(DsnTest, SqliteErrors) {
  for (const char* text :
       {"sqlite:", "sqlite://", "sqlite:///", "sqlite:///?x=1", "sqlite:app.db", "sqlite:?x=1"}) {
    EXPECT_THAT(parse_error(text), HasSubstr("dsn: sqlite needs a file path or :memory:")) << text;
  }
}

TEST(DsnTest, Odbc) {
  const Dsn d = Dsn::parse("odbc:DSN=shop;UID=app;PWD=secret");
  EXPECT_EQ(d.scheme, "odbc");
  EXPECT_EQ(d.connection_string, "DSN=shop;UID=app;PWD=secret");
  // Nothing else is extracted: the connection string is the driver manager's business.
  EXPECT_TRUE(d.user.empty());
  EXPECT_TRUE(d.password.empty());
  EXPECT_TRUE(d.host.empty());
  EXPECT_TRUE(d.database.empty());
  EXPECT_TRUE(d.params.empty());
  EXPECT_EQ(Dsn::parse("ODBC:Driver={X};Server=h").scheme, "odbc");
  // '?' and '@' are not special in a connection string.
  EXPECT_EQ(Dsn::parse("odbc:DSN=a?b;UID=u@x").connection_string, "DSN=a?b;UID=u@x");
}

TEST(DsnTest, OdbcErrors) {
  for (const char* text : {"odbc:", "odbc:   "}) {
    EXPECT_THAT(parse_error(text), HasSubstr("dsn: odbc needs a connection string after 'odbc:'"))
        << text;
  }
}

TEST(DsnTest, Ipv6) {
  Dsn d = Dsn::parse("postgresql://u:pw@[::1]:5432/db");
  EXPECT_EQ(d.host, "::1");
  EXPECT_EQ(d.port, 5432);
  EXPECT_EQ(d.database, "db");

  d = Dsn::parse("postgresql://[2001:db8::7]/db");
  EXPECT_EQ(d.host, "2001:db8::7");
  EXPECT_EQ(d.port, 0);

  d = Dsn::parse("postgresql://[fe80::1%25eth0]:5432");
  EXPECT_EQ(d.host, "fe80::1%eth0");
}

TEST(DsnTest, Ipv6Errors) {
  EXPECT_THAT(parse_error("postgresql://[::1/db"), HasSubstr("dsn: host: '[' without ']'"));
  EXPECT_THAT(parse_error("postgresql://[::1]x/db"), HasSubstr("dsn: host: unexpected text"));
  EXPECT_THAT(parse_error("postgresql://::1/db"), HasSubstr("dsn: host: IPv6 addresses must be"));
  EXPECT_THAT(parse_error("postgresql://[::1]:/db"), HasSubstr("dsn: port '' is not a number"));
}

TEST(DsnTest, MultipleHostsAreKeptWhole) {
  const Dsn d = Dsn::parse("postgresql://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write");
  EXPECT_EQ(d.host, "h1:5432,h2:5433");
  EXPECT_EQ(d.port, 0);
  EXPECT_EQ(d.user, "u");
  EXPECT_EQ(d.password, "pw");
  EXPECT_EQ(d.database, "db");
  EXPECT_EQ(d.param("target_session_attrs"), "read-write");

  EXPECT_EQ(Dsn::parse("postgresql://h1,h2/db").host, "h1,h2");
  EXPECT_EQ(Dsn::parse("postgresql://[::1]:5432,h2/db").host, "[::1]:5432,h2");
}

TEST(DsnTest, PercentDecoding) {
  const Dsn d = Dsn::parse(
      "postgresql://us%40er:p%40ss%2Fw%3Ard%3F@my%2Dhost:5432/my%20db?k%26ey=v%3Dal%26ue&a=%C3%A9");
  EXPECT_EQ(d.user, "us@er");
  EXPECT_EQ(d.password, "p@ss/w:rd?");
  EXPECT_EQ(d.host, "my-host");
  EXPECT_EQ(d.database, "my db");
  EXPECT_EQ(d.param("k&ey"), "v=al&ue");
  EXPECT_EQ(d.param("a"), "\xC3\xA9");
  // '+' is not a space in a DSN.
  EXPECT_EQ(Dsn::parse("x://h?a=1+2").param("a"), "1+2");
  // Lower-case hex works too.
  EXPECT_EQ(Dsn::parse("x://u:%2f%2F@h").password, "//");
}

TEST(DsnTest, PasswordMayHoldUnescapedColonAndAt) {
  const Dsn d = Dsn::parse("postgresql://app:pa:ss@w@rd@db1:5432/shop");
  EXPECT_EQ(d.user, "app");
  EXPECT_EQ(d.password, "pa:ss@w@rd");
  EXPECT_EQ(d.host, "db1");
  EXPECT_EQ(d.port, 5432);
  EXPECT_EQ(d.database, "shop");
}

TEST(DsnTest, QueryParameters) {
  const Dsn d = Dsn::parse("x://h/db?flag&&a=1&a=2&empty=&eq=a=b&");
  EXPECT_EQ(d.params.size(), 4u);
  EXPECT_EQ(d.param("flag", "unset"), "");  // present without a value
  EXPECT_EQ(d.param("a"), "2");             // the last one wins
  EXPECT_EQ(d.param("empty", "unset"), "");
  EXPECT_EQ(d.param("eq"), "a=b");  // only the first '=' separates
}

TEST(DsnTest, ParamFallback) {
  const Dsn d = Dsn::parse("x://h?a=1");
  EXPECT_EQ(d.param("a", "z"), "1");
  EXPECT_EQ(d.param("b", "z"), "z");
  EXPECT_EQ(d.param("b"), "");
  EXPECT_EQ(d.param("A", "z"), "z");  // keys are case-sensitive
}

TEST(DsnTest, Empty) {
  EXPECT_EQ(parse_error(""), "dsn: empty");
  EXPECT_EQ(parse_error("   \t\n"), "dsn: empty");
}

TEST(DsnTest, MissingScheme) {
  for (const char* text :
       {"localhost:5432/db", "://h/db", "db1", "postgresql:/h/db", "/tmp/x.db"}) {
    EXPECT_EQ(parse_error(text), "dsn: missing scheme (expected e.g. postgresql://...)") << text;
  }
}

TEST(DsnTest, BadScheme) {
  for (const char* text : {"1pg://h", "pg sql://h", "p_g://h"}) {
    EXPECT_THAT(parse_error(text), HasSubstr("dsn: bad scheme")) << text;
  }
}

TEST(DsnTest, BadPort) {
  EXPECT_EQ(parse_error("postgresql://h:abc/db"), "dsn: port 'abc' is not a number in 1..65535");
  EXPECT_EQ(parse_error("postgresql://h:0/db"), "dsn: port '0' is not a number in 1..65535");
  EXPECT_EQ(parse_error("postgresql://h:65536/db"),
            "dsn: port '65536' is not a number in 1..65535");
  EXPECT_EQ(parse_error("postgresql://h:-1"), "dsn: port '-1' is not a number in 1..65535");
  EXPECT_EQ(parse_error("postgresql://h:"), "dsn: port '' is not a number in 1..65535");
  EXPECT_EQ(parse_error("postgresql://h:99999999999999999999"),
            "dsn: port '99999999999999999999' is not a number in 1..65535");
  EXPECT_EQ(parse_error("postgresql://h: 5432"), "dsn: port ' 5432' is not a number in 1..65535");
}

TEST(DsnTest, BadPercentEscapeNamesTheField) {
  EXPECT_THAT(parse_error("x://us%zzer@h"), HasSubstr("dsn: bad percent-escape in user"));
  EXPECT_THAT(parse_error("x://u:p%4@h"), HasSubstr("dsn: bad percent-escape in password"));
  EXPECT_THAT(parse_error("x://h%/db"), HasSubstr("dsn: bad percent-escape in host"));
  EXPECT_THAT(parse_error("x://h/d%g0"), HasSubstr("dsn: bad percent-escape in database"));
  EXPECT_THAT(parse_error("x://h/d?k%=1"), HasSubstr("dsn: bad percent-escape in parameter name"));
  EXPECT_THAT(parse_error("x://h/d?k=%"), HasSubstr("dsn: bad percent-escape in parameter value"));
  EXPECT_THAT(parse_error("sqlite:///a%2"), HasSubstr("dsn: bad percent-escape in database"));
}

TEST(DsnTest, EmptyParameterName) {
  EXPECT_EQ(parse_error("x://h/db?=1"), "dsn: parameter with an empty name");
}

TEST(DsnTest, AtAfterHostIsRejected) {
  // "pa/ss" was meant as the password: without the check, "pa" would be reported as a port.
  EXPECT_THAT(parse_error("postgresql://u:pa/ss@h/db"), HasSubstr("dsn: '@' after the host part"));
  EXPECT_THAT(parse_error("postgresql://u:pa?ss@h/db"), HasSubstr("dsn: '@' after the host part"));
  // With credentials present, a later '@' is unambiguous and allowed.
  EXPECT_EQ(Dsn::parse("x://u@h/db?email=a@b").param("email"), "a@b");
}

TEST(DsnTest, PasswordNeverInAnyMessage) {
  const std::string s = kSecret;
  const std::vector<std::string> bad = {
      "postgresql://u:" + s + "@h:abc/db",
      "postgresql://u:" + s + "@h:0/db",
      "postgresql://u:" + s + "@[::1/db",
      "postgresql://u:" + s + "@[::1]x/db",
      "postgresql://u:" + s + "@::1/db",
      "postgresql://u:" + s + "%@h/db",
      "postgresql://u:" + s + "@h%zz/db",
      "postgresql://u:" + s + "@h/d%zz",
      "postgresql://u:" + s + "@h/d?=x",
      "postgresql://u:" + s + "@h/d?k=%",
      "postgresql://u:/" + s + "@h/db",
      "postgresql://u:" + s + "/x@h:1/db",
      "postgresql://u:" + s + "?x@h:1/db",
      "u:" + s + "@h/db",
      "h:" + s,
      "u:" + s + "@h://x",
      "odbc:",
      "sqlite:" + s,
  };
  for (const std::string& text : bad) {
    EXPECT_THAT(parse_error(text), Not(HasSubstr(s))) << text;
  }
}

TEST(DsnTest, RedactedMasksThePassword) {
  const Dsn d =
      Dsn::parse("postgresql://app:" + std::string(kSecret) + "@db1:5432/shop?sslmode=require");
  EXPECT_EQ(d.redacted(), "postgresql://app:***@db1:5432/shop?sslmode=require");
  EXPECT_EQ(Dsn::parse("postgres://app@db1/shop").redacted(), "postgresql://app@db1/shop");
  EXPECT_EQ(Dsn::parse("mysql://db1").redacted(), "mariadb://db1");
  EXPECT_EQ(Dsn::parse("fake://x").redacted(), "fake://x");
  EXPECT_EQ(Dsn::parse("x://:pw@h").redacted(), "x://:***@h");
}

TEST(DsnTest, RedactedMasksSecretParameters) {
  const Dsn d = Dsn::parse("postgresql://h/db?password=" + std::string(kSecret) +
                           "&sslpassword=k2&PWD=k3&sslmode=require");
  EXPECT_EQ(d.param("password"), kSecret);  // still available to the driver
  const std::string r = d.redacted();
  EXPECT_THAT(r, Not(HasSubstr(kSecret)));
  EXPECT_THAT(r, Not(HasSubstr("k2")));
  EXPECT_THAT(r, Not(HasSubstr("k3")));
  EXPECT_EQ(r, "postgresql://h/db?PWD=***&password=***&sslmode=require&sslpassword=***");
}

TEST(DsnTest, RedactedIpv6AndMultiHost) {
  EXPECT_EQ(Dsn::parse("postgresql://u:pw@[::1]:5432/db").redacted(),
            "postgresql://u:***@[::1]:5432/db");
  EXPECT_EQ(Dsn::parse("postgresql://[::1]/db").redacted(), "postgresql://[::1]/db");
  EXPECT_EQ(Dsn::parse("postgresql://u:pw@h1:5432,h2:5433/db").redacted(),
            "postgresql://u:***@h1:5432,h2:5433/db");
}

TEST(DsnTest, RedactedSqlite) {
  EXPECT_EQ(Dsn::parse("sqlite:///var/app.db?busy_timeout=5000").redacted(),
            "sqlite:///var/app.db?busy_timeout=5000");
  EXPECT_EQ(Dsn::parse("sqlite://rel/app.db").redacted(), "sqlite://rel/app.db");
  EXPECT_EQ(Dsn::parse("sqlite::memory:").redacted(), "sqlite::memory:");
  EXPECT_EQ(Dsn::parse("sqlite://:memory:").redacted(), "sqlite::memory:");
}

TEST(DsnTest, RedactedOdbcMasksPwdCaseInsensitively) {
  EXPECT_EQ(Dsn::parse("odbc:DSN=shop;UID=app;PWD=secret").redacted(),
            "odbc:DSN=shop;UID=app;PWD=***");
  EXPECT_EQ(Dsn::parse("odbc:dsn=shop;pwd=secret;uid=app").redacted(),
            "odbc:dsn=shop;pwd=***;uid=app");
  EXPECT_EQ(Dsn::parse("odbc:DSN=shop; Pwd = secret ;UID=app").redacted(),
            "odbc:DSN=shop; Pwd =***;UID=app");
  EXPECT_EQ(Dsn::parse("odbc:Driver={PostgreSQL Unicode};Password=secret").redacted(),
            "odbc:Driver={PostgreSQL Unicode};Password=***");
  // A braced password may hold ';', '=' and "}}".
  EXPECT_EQ(Dsn::parse("odbc:PWD={se;c=r}}et};UID=app").redacted(), "odbc:PWD=***;UID=app");
  // Junk after the brace, or an unterminated brace, is masked too.
  EXPECT_EQ(Dsn::parse("odbc:PWD={sec}ret;UID=app").redacted(), "odbc:PWD=***;UID=app");
  EXPECT_EQ(Dsn::parse("odbc:UID=app;PWD={secret").redacted(), "odbc:UID=app;PWD=***");
  // An unbalanced brace swallows the rest, secrets included: all of it is masked, whatever the key.
  EXPECT_EQ(Dsn::parse("odbc:DRIVER={/path;SERVER=h;UID=app;PWD=hunter2").redacted(),
            "odbc:DRIVER=***");
  // A brace opens only at the start of a value (as the ODBC driver splits the string).
  EXPECT_EQ(Dsn::parse("odbc:PWD=p{ss;UID=app").redacted(), "odbc:PWD=***;UID=app");
  EXPECT_EQ(Dsn::parse("odbc:Driver=a{b;UID=app;PWD=x").redacted(),
            "odbc:Driver=a{b;UID=app;PWD=***");
  // Non-secret braced values and attributes without '=' are kept as written.
  EXPECT_EQ(Dsn::parse("odbc:Driver={A;B};Trusted;UID=x").redacted(),
            "odbc:Driver={A;B};Trusted;UID=x");
}

TEST(DsnTest, RedactedNeverHoldsThePassword) {
  const std::string s = kSecret;
  for (const std::string& text :
       {"postgresql://u:" + s + "@h/db", "mariadb://u:" + s + "@h:3306/db", "x://:" + s + "@h",
        "x://h?password=" + s, "x://u:" + s + "@h?Password=" + s, "odbc:DSN=x;PWD=" + s,
        "odbc:DSN=x;pwd={" + s + "}", "odbc:PASSWORD=" + s + ";DSN=x",
        "odbc:DRIVER={/path;SERVER=h;UID=app;PWD=" + s}) {
    EXPECT_THAT(Dsn::parse(text).redacted(), Not(HasSubstr(s))) << text;
  }
}

// redacted() text is a DSN too: it parses back to the same fields, with "***" as the password.
TEST(DsnTest, RedactedRoundTrips) {
  for (const char* text : {
           "postgresql://app:secret@db1:5432/shop?sslmode=require&x=1",
           "postgresql://us%40er:p@h/my%20db?k%26ey=v%3Dal%26ue%3F&e=a%40b",
           "postgresql://[::1]:5432/db",
           "postgresql://h1:5432,h2:5433/db",
           "mariadb://u@h",
           "fake://x",
           "x:///db%3Fq",
           "x://h%40%2F%3A/",
           "sqlite:///tmp/my%20db%3F%25.db?mode=ro",
           "sqlite::memory:",
       }) {
    const Dsn d = Dsn::parse(text);
    const Dsn r = Dsn::parse(d.redacted());
    EXPECT_EQ(r.scheme, d.scheme) << text;
    EXPECT_EQ(r.user, d.user) << text;
    EXPECT_EQ(r.password, d.password.empty() ? "" : "***") << text;
    EXPECT_EQ(r.host, d.host) << text;
    EXPECT_EQ(r.port, d.port) << text;
    EXPECT_EQ(r.database, d.database) << text;
    EXPECT_EQ(r.params, d.params) << text;
  }
}

}  // namespace
}  // namespace reservoir
