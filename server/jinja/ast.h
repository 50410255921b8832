// The syntax tree of a parsed template. Built by the parser, owned by the Template, read-only afterwards
// (so one tree serves concurrent renders). Trees are at most ParseOptions::max_nesting_depth deep, which
// keeps both the recursive evaluator and the recursive destructor shallow.
#ifndef QRAG_SERVER_JINJA_AST_H_
#define QRAG_SERVER_JINJA_AST_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/jinja/value.h"

namespace qrag::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

// One node kind per expression form; which fields a kind uses is listed beside it.
struct Expr {
  enum class Kind : uint8_t {
    kLiteral,  // literal
    kName,     // name
    kList,     // children: items
    kTuple,    // children: items
    kDict,     // children: key0, value0, key1, value1, ...
    kNeg,      // children[0]
    kPos,      // children[0]
    kNot,      // children[0]
    kBinary,   // name: "+", "-", "*", "/", "//", "%", "**"; children[0], children[1]
    kAnd,      // children[0], children[1]
    kOr,       // children[0], children[1]
    kCompare,  // children[0] ops[0] children[1] ops[1] children[2] ... (Python chained comparison)
    kConcat,   // children: the operands of a ~ b ~ c
    kCond,     // children: condition, value if true, value if false (may be null: undefined)
    kGetAttr,  // children[0] . name
    kGetItem,  // children[0] [ children[1] ]
    kSlice,    // children[0] [ children[1] : children[2] : children[3] ] (each bound may be null)
    kCall,     // children[0] ( children[1..] , kwargs )
    kFilter,   // children[0] | name ( children[1..], kwargs ); children[0] is null in a filter block
    kTest,     // children[0] is [not] name ( children[1..], kwargs )
  };

  Expr(Kind k, int l) : kind(k), line(l) {}

  Kind kind;
  int line;
  int height = 1;  // nodes on the longest path down from here
  bool negated = false;  // kTest: `is not`
  Value literal;
  std::string name;
  std::vector<std::string> ops;
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind : uint8_t {
    kText,
    kPrint,
    kIf,
    kFor,
    kSet,
    kMacro,
    kBreak,
    kContinue,
    kWith,         // also {% generation %}: a body run in its own scope
    kFilterBlock,
  };
  Stmt(Kind k, int l) : kind(k), line(l) {}
  virtual ~Stmt() = default;

  Kind kind;
  int line;
};

struct TextStmt : Stmt {
  explicit TextStmt(int l) : Stmt(Kind::kText, l) {}
  std::string text;
};

struct PrintStmt : Stmt {
  explicit PrintStmt(int l) : Stmt(Kind::kPrint, l) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  explicit IfStmt(int l) : Stmt(Kind::kIf, l) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if, elif, elif, ...
  Body else_body;
};

// An assignment target: one name, several names to unpack into (`a, b`), or a namespace attribute.
struct Target {
  std::vector<std::string> names;
  bool unpack = false;  // written as a tuple, even of one name: `a,`
  std::string attribute;  // non-empty: `names[0].attribute` (namespace assignment)
};

struct ForStmt : Stmt {
  explicit ForStmt(int l) : Stmt(Kind::kFor, l) {}
  Target target;
  ExprPtr iterable;
  ExprPtr filter;  // `for x in xs if cond`, may be null
  Body body;
  Body else_body;
};

struct SetStmt : Stmt {
  explicit SetStmt(int l) : Stmt(Kind::kSet, l) {}
  Target target;
  ExprPtr value;      // null for a block set
  Body body;          // block set: {% set x %}...{% endset %}
  ExprPtr filter;     // block set with a filter: {% set x | trim %}; innermost operand is null
};

struct MacroStmt : Stmt {
  explicit MacroStmt(int l) : Stmt(Kind::kMacro, l) {}
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // one per param, null when it has none
  Body body;
};

struct WithStmt : Stmt {
  explicit WithStmt(int l) : Stmt(Kind::kWith, l) {}
  std::vector<std::pair<std::string, ExprPtr>> assignments;
  Body body;
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(int l) : Stmt(Kind::kFilterBlock, l) {}
  ExprPtr filter;  // a kFilter chain whose innermost operand is null (the body's output)
  Body body;
};

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_AST_H_
