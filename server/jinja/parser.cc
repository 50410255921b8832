#include "server/jinja/parser.h"

#include <algorithm>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "server/jinja/absl_compat.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/jinja/lexer.h"

namespace qrag::jinja {
namespace {

std::string Describe(const Token& t) {
  switch (t.type) {
    case TokenType::kText:
      return "template text";
    case TokenType::kVarBegin:
      return "'{{'";
    case TokenType::kVarEnd:
      return "end of print statement ('}}')";
    case TokenType::kBlockBegin:
      return "'{%'";
    case TokenType::kBlockEnd:
      return "end of statement block ('%}')";
    case TokenType::kName:
      return Cat("'", t.value, "'");
    case TokenType::kString:
      return "string";
    case TokenType::kInt:
      return "integer";
    case TokenType::kFloat:
      return "float";
    case TokenType::kOperator:
      return Cat("'", t.value, "'");
    case TokenType::kEnd:
      return "end of template";
  }
  return "token";
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParseOptions& options)
      : tokens_(std::move(tokens)), options_(options) {}

  absl::StatusOr<Body> ParseAll() {
    std::string matched;
    QRAG_ASSIGN_OR_RETURN(Body body, ParseBody({}, "", 0, &matched));
    return body;
  }

 private:
  // ---- token helpers ----
  const Token& Peek(size_t k = 0) const { return tokens_[std::min(pos_ + k, tokens_.size() - 1)]; }
  const Token& Next() {
    const Token& t = tokens_[pos_];
    if (pos_ + 1 < tokens_.size()) ++pos_;
    return t;
  }
  bool IsOp(std::string_view op, size_t k = 0) const {
    return Peek(k).type == TokenType::kOperator && Peek(k).value == op;
  }
  bool IsName(std::string_view name, size_t k = 0) const {
    return Peek(k).type == TokenType::kName && Peek(k).value == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }
  absl::Status Fail(const Token& t, std::string_view message) const { return SyntaxError(t.line, t.column, message); }
  absl::Status Unexpected(std::string_view expected) const {
    return Fail(Peek(), Cat("expected ", expected, ", got ", Describe(Peek())));
  }
  absl::Status ExpectOp(std::string_view op) {
    if (SkipOp(op)) return absl::OkStatus();
    return Unexpected(Cat("'", op, "'"));
  }
  absl::Status ExpectType(TokenType type, std::string_view what) {
    if (Peek().type != type) return Unexpected(what);
    Next();
    return absl::OkStatus();
  }
  absl::Status ExpectBlockEnd() { return ExpectType(TokenType::kBlockEnd, "end of statement block ('%}')"); }
  absl::StatusOr<std::string> ExpectName() {
    if (Peek().type != TokenType::kName) return Unexpected("a name");
    return Next().value;
  }

  // ---- nesting limits ----
  struct DepthGuard {
    explicit DepthGuard(int* d) : depth(d) { ++*depth; }
    ~DepthGuard() { --*depth; }
    int* depth;
  };
  absl::Status CheckDepth() const {
    if (depth_ > options_.max_nesting_depth) {
      return Fail(Peek(), Cat("template nested too deeply (limit ", options_.max_nesting_depth, ")"));
    }
    return absl::OkStatus();
  }

  ExprPtr Node(Expr::Kind kind, int line) { return std::make_unique<Expr>(kind, line); }

  // Sets the node's height and enforces the nesting limit on the tree.
  absl::StatusOr<ExprPtr> Finish(ExprPtr node) {
    int h = 0;
    for (const ExprPtr& c : node->children) {
      if (c) h = std::max(h, c->height);
    }
    for (const auto& [name, c] : node->kwargs) h = std::max(h, c->height);
    node->height = h + 1;
    if (node->height > options_.max_nesting_depth) {
      return SyntaxError(node->line, 1,
                         Cat("expression nested too deeply (limit ", options_.max_nesting_depth, ")"));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> Binary(Expr::Kind kind, std::string op, ExprPtr left, ExprPtr right, int line) {
    ExprPtr n = Node(kind, line);
    n->name = std::move(op);
    n->children.push_back(std::move(left));
    n->children.push_back(std::move(right));
    return Finish(std::move(n));
  }

  // ---- statements ----

  // Statements until a block tag named in `ends` (its name is consumed and stored in *matched; the rest of
  // that tag is left to the caller) or, with empty `ends`, the end of the template.
  absl::StatusOr<Body> ParseBody(std::initializer_list<std::string_view> ends, std::string_view opener,
                                 int opener_line, std::string* matched) {
    Body body;
    while (true) {
      const Token& t = Peek();
      switch (t.type) {
        case TokenType::kEnd:
          if (ends.size() == 0) return body;
          return Fail(t, Cat("unexpected end of template: the '", opener, "' tag opened at line ",
                                      opener_line, " needs {% ", *ends.begin(), " %}"));
        case TokenType::kText: {
          auto s = std::make_unique<TextStmt>(t.line);
          s->text = Next().value;
          body.push_back(std::move(s));
          break;
        }
        case TokenType::kVarBegin: {
          const int line = Next().line;
          auto s = std::make_unique<PrintStmt>(line);
          QRAG_ASSIGN_OR_RETURN(s->expr, ParseTuple(/*with_condexpr=*/true, {}, /*explicit_parens=*/false));
          QRAG_RETURN_IF_ERROR(ExpectType(TokenType::kVarEnd, "end of print statement ('}}')"));
          body.push_back(std::move(s));
          break;
        }
        case TokenType::kBlockBegin: {
          const Token& name = Peek(1);
          if (name.type == TokenType::kName &&
              std::find(ends.begin(), ends.end(), std::string_view(name.value)) != ends.end()) {
            Next();
            *matched = Next().value;
            return body;
          }
          Next();
          QRAG_ASSIGN_OR_RETURN(StmtPtr s, ParseStatement());
          if (s) body.push_back(std::move(s));
          break;
        }
        default:
          return Fail(t, Cat("unexpected ", Describe(t)));
      }
    }
  }

  absl::StatusOr<StmtPtr> ParseStatement() {
    const Token& t = Peek();
    if (t.type != TokenType::kName) return Fail(t, "tag name expected");
    const std::string name = t.value;
    const int line = t.line;
    DepthGuard guard(&depth_);
    QRAG_RETURN_IF_ERROR(CheckDepth());
    if (name == "if") return ParseIf();
    if (name == "for") return ParseFor();
    if (name == "set") return ParseSet();
    if (name == "macro") return ParseMacro();
    if (name == "with" || name == "generation") return ParseWith(name);
    if (name == "filter") return ParseFilterBlock();
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) return Fail(t, Cat("'", name, "' outside of a loop"));
      Next();
      QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
      return std::make_unique<Stmt>(name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, line);
    }
    if (name.rfind("end", 0) == 0 || name == "elif" || name == "else") {
      return Fail(t, Cat("unexpected '{% ", name, " %}' (no open tag it could close)"));
    }
    static constexpr std::string_view kUnsupported[] = {"include", "import", "from", "extends", "block",
                                                        "call", "do", "autoescape", "trans"};
    for (std::string_view u : kUnsupported) {
      if (name == u) return Fail(t, Cat("the '", name, "' tag is not supported"));
    }
    return Fail(t, Cat("unknown tag '", name, "'"));
  }

  absl::StatusOr<StmtPtr> ParseIf() {
    const int line = Next().line;
    auto s = std::make_unique<IfStmt>(line);
    std::string matched;
    while (true) {
      QRAG_ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(/*with_condexpr=*/false, {}, false));
      QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
      QRAG_ASSIGN_OR_RETURN(Body body, ParseBody({"elif", "else", "endif"}, "if", line, &matched));
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (matched != "elif") break;
    }
    if (matched == "else") {
      QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
      QRAG_ASSIGN_OR_RETURN(s->else_body, ParseBody({"endif"}, "if", line, &matched));
    }
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  // Names for `for` / `set`: `a`, `a, b`, `(a, b)`; with `allow_namespace`, also `ns.attr`.
  absl::StatusOr<Target> ParseTarget(bool allow_namespace) {
    Target target;
    if (allow_namespace && Peek().type == TokenType::kName && IsOp(".", 1)) {
      target.names.push_back(Next().value);
      Next();
      QRAG_ASSIGN_OR_RETURN(target.attribute, ExpectName());
      return target;
    }
    const bool parens = SkipOp("(");
    while (true) {
      if (Peek().type != TokenType::kName) return Unexpected("a variable name");
      std::string name = Next().value;
      if (name == "true" || name == "false" || name == "none" || name == "True" || name == "False" ||
          name == "None") {
        return Fail(Peek(), Cat("cannot assign to '", name, "'"));
      }
      target.names.push_back(std::move(name));
      if (!SkipOp(",")) break;
      target.unpack = true;
      if (Peek().type != TokenType::kName) break;  // trailing comma
    }
    if (parens) {
      QRAG_RETURN_IF_ERROR(ExpectOp(")"));
      if (target.names.size() > 1) target.unpack = true;
    }
    return target;
  }

  absl::StatusOr<StmtPtr> ParseFor() {
    const int line = Next().line;
    auto s = std::make_unique<ForStmt>(line);
    QRAG_ASSIGN_OR_RETURN(s->target, ParseTarget(/*allow_namespace=*/false));
    if (!SkipName("in")) return Unexpected("'in'");
    QRAG_ASSIGN_OR_RETURN(s->iterable, ParseTuple(/*with_condexpr=*/false, {"recursive", "if"}, false));
    if (SkipName("if")) {
      QRAG_ASSIGN_OR_RETURN(s->filter, ParseExpression(/*with_condexpr=*/true));
    }
    if (IsName("recursive")) return Fail(Peek(), "recursive loops are not supported");
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    std::string matched;
    ++loop_depth_;
    auto body = ParseBody({"endfor", "else"}, "for", line, &matched);
    --loop_depth_;
    if (!body.ok()) return body.status();
    s->body = *std::move(body);
    if (matched == "else") {
      QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
      QRAG_ASSIGN_OR_RETURN(s->else_body, ParseBody({"endfor"}, "for", line, &matched));
    }
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  absl::StatusOr<StmtPtr> ParseSet() {
    const int line = Next().line;
    auto s = std::make_unique<SetStmt>(line);
    QRAG_ASSIGN_OR_RETURN(s->target, ParseTarget(/*allow_namespace=*/true));
    if (SkipOp("=")) {
      QRAG_ASSIGN_OR_RETURN(s->value, ParseTuple(/*with_condexpr=*/true, {}, false));
      QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
      return s;
    }
    if (s->target.unpack) return Unexpected("'='");
    if (IsOp("|")) {
      QRAG_ASSIGN_OR_RETURN(s->filter, ParseFilters(nullptr));
    }
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    std::string matched;
    QRAG_ASSIGN_OR_RETURN(s->body, ParseBody({"endset"}, "set", line, &matched));
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  absl::StatusOr<StmtPtr> ParseMacro() {
    const int line = Next().line;
    auto s = std::make_unique<MacroStmt>(line);
    QRAG_ASSIGN_OR_RETURN(s->name, ExpectName());
    QRAG_RETURN_IF_ERROR(ExpectOp("("));
    while (!IsOp(")")) {
      if (!s->params.empty()) {
        QRAG_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(")")) break;
      }
      QRAG_ASSIGN_OR_RETURN(std::string param, ExpectName());
      ExprPtr def;
      if (SkipOp("=")) {
        QRAG_ASSIGN_OR_RETURN(def, ParseExpression(/*with_condexpr=*/true));
      } else if (!s->defaults.empty() && s->defaults.back()) {
        return Fail(Peek(), "non-default argument follows default argument");
      }
      s->params.push_back(std::move(param));
      s->defaults.push_back(std::move(def));
    }
    Next();  // ')'
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    const int saved_loops = loop_depth_;
    loop_depth_ = 0;  // break/continue cannot leave a macro
    std::string matched;
    auto body = ParseBody({"endmacro"}, "macro", line, &matched);
    loop_depth_ = saved_loops;
    if (!body.ok()) return body.status();
    s->body = *std::move(body);
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  // {% with a = 1, b = 2 %}...{% endwith %} and {% generation %}...{% endgeneration %}.
  absl::StatusOr<StmtPtr> ParseWith(const std::string& tag) {
    const int line = Next().line;
    auto s = std::make_unique<WithStmt>(line);
    if (tag == "with") {
      while (Peek().type != TokenType::kBlockEnd) {
        if (!s->assignments.empty()) QRAG_RETURN_IF_ERROR(ExpectOp(","));
        QRAG_ASSIGN_OR_RETURN(std::string name, ExpectName());
        QRAG_RETURN_IF_ERROR(ExpectOp("="));
        QRAG_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condexpr=*/true));
        s->assignments.emplace_back(std::move(name), std::move(value));
      }
    }
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    std::string matched;
    if (tag == "with") {
      QRAG_ASSIGN_OR_RETURN(s->body, ParseBody({"endwith"}, "with", line, &matched));
    } else {
      QRAG_ASSIGN_OR_RETURN(s->body, ParseBody({"endgeneration"}, "generation", line, &matched));
    }
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  absl::StatusOr<StmtPtr> ParseFilterBlock() {
    const int line = Next().line;
    auto s = std::make_unique<FilterBlockStmt>(line);
    QRAG_ASSIGN_OR_RETURN(s->filter, ParseFilters(nullptr, /*start_inline=*/true));
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    std::string matched;
    QRAG_ASSIGN_OR_RETURN(s->body, ParseBody({"endfilter"}, "filter", line, &matched));
    QRAG_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  // ---- expressions ----

  bool IsTupleEnd(std::initializer_list<std::string_view> extra_end_names) const {
    const Token& t = Peek();
    if (t.type == TokenType::kVarEnd || t.type == TokenType::kBlockEnd || (t.type == TokenType::kOperator && t.value == ")")) {
      return true;
    }
    if (t.type == TokenType::kName) {
      return std::find(extra_end_names.begin(), extra_end_names.end(), std::string_view(t.value)) !=
             extra_end_names.end();
    }
    return false;
  }

  // Comma-separated expressions; a tuple when there is a comma.
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, std::initializer_list<std::string_view> extra_end_names,
                                     bool explicit_parens) {
    const int line = Peek().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) QRAG_RETURN_IF_ERROR(ExpectOp(","));
      if (IsTupleEnd(extra_end_names)) break;
      QRAG_ASSIGN_OR_RETURN(ExprPtr e, ParseExpression(with_condexpr));
      items.push_back(std::move(e));
      if (IsOp(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) return Unexpected("an expression");
    }
    ExprPtr n = Node(Expr::Kind::kTuple, line);
    n->children = std::move(items);
    return Finish(std::move(n));
  }

  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
    DepthGuard guard(&depth_);
    QRAG_RETURN_IF_ERROR(CheckDepth());
    return with_condexpr ? ParseCondExpr() : ParseOr();
  }

  absl::StatusOr<ExprPtr> ParseCondExpr() {
    QRAG_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
    while (IsName("if")) {
      const int line = Next().line;
      QRAG_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr otherwise;
      if (SkipName("else")) {
        DepthGuard guard(&depth_);
        QRAG_RETURN_IF_ERROR(CheckDepth());
        QRAG_ASSIGN_OR_RETURN(otherwise, ParseCondExpr());
      }
      ExprPtr n = Node(Expr::Kind::kCond, line);
      n->children.push_back(std::move(cond));
      n->children.push_back(std::move(expr));
      n->children.push_back(std::move(otherwise));
      QRAG_ASSIGN_OR_RETURN(expr, Finish(std::move(n)));
    }
    return expr;
  }

  // A left-associative level: operand (op operand)*, where `is_op` recognises the level's operators (names
  // such as `and` or operator tokens) and `operand` parses the next tighter level.
  absl::StatusOr<ExprPtr> ParseLeftAssoc(Expr::Kind kind, bool (Parser::*is_op)() const,
                                         absl::StatusOr<ExprPtr> (Parser::*operand)()) {
    QRAG_ASSIGN_OR_RETURN(ExprPtr left, (this->*operand)());
    while ((this->*is_op)()) {
      const Token& t = Next();
      const int line = t.line;
      std::string op = t.value;
      QRAG_ASSIGN_OR_RETURN(ExprPtr right, (this->*operand)());
      QRAG_ASSIGN_OR_RETURN(left, Binary(kind, std::move(op), std::move(left), std::move(right), line));
    }
    return left;
  }
  bool AtOr() const { return IsName("or"); }
  bool AtAnd() const { return IsName("and"); }
  bool AtAddSub() const { return IsOp("+") || IsOp("-"); }
  bool AtMulDiv() const { return IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%"); }
  bool AtPow() const { return IsOp("**"); }

  absl::StatusOr<ExprPtr> ParseOr() { return ParseLeftAssoc(Expr::Kind::kOr, &Parser::AtOr, &Parser::ParseAnd); }
  absl::StatusOr<ExprPtr> ParseAnd() { return ParseLeftAssoc(Expr::Kind::kAnd, &Parser::AtAnd, &Parser::ParseNot); }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (!IsName("not")) return ParseCompare();
    const int line = Next().line;
    DepthGuard guard(&depth_);
    QRAG_RETURN_IF_ERROR(CheckDepth());
    QRAG_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    ExprPtr n = Node(Expr::Kind::kNot, line);
    n->children.push_back(std::move(operand));
    return Finish(std::move(n));
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    const int line = Peek().line;
    QRAG_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    ExprPtr n;
    while (true) {
      std::string op;
      const Token& t = Peek();
      if (t.type == TokenType::kOperator &&
          (t.value == "==" || t.value == "!=" || t.value == "<" || t.value == ">" || t.value == "<=" ||
           t.value == ">=")) {
        op = Next().value;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "not in";
      } else {
        break;
      }
      if (!n) {
        n = Node(Expr::Kind::kCompare, line);
        n->children.push_back(std::move(first));
      }
      QRAG_ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
      n->ops.push_back(std::move(op));
      n->children.push_back(std::move(operand));
    }
    if (!n) return first;
    return Finish(std::move(n));
  }

  absl::StatusOr<ExprPtr> ParseMath1() {
    return ParseLeftAssoc(Expr::Kind::kBinary, &Parser::AtAddSub, &Parser::ParseConcat);
  }

  absl::StatusOr<ExprPtr> ParseConcat() {
    const int line = Peek().line;
    QRAG_ASSIGN_OR_RETURN(ExprPtr first, ParseMath2());
    if (!IsOp("~")) return first;
    ExprPtr n = Node(Expr::Kind::kConcat, line);
    n->children.push_back(std::move(first));
    while (SkipOp("~")) {
      QRAG_ASSIGN_OR_RETURN(ExprPtr operand, ParseMath2());
      n->children.push_back(std::move(operand));
    }
    return Finish(std::move(n));
  }

  absl::StatusOr<ExprPtr> ParseMath2() {
    return ParseLeftAssoc(Expr::Kind::kBinary, &Parser::AtMulDiv, &Parser::ParsePow);
  }

  absl::StatusOr<ExprPtr> ParseUnaryWithFilters() { return ParseUnary(/*with_filter=*/true); }
  absl::StatusOr<ExprPtr> ParsePow() {
    return ParseLeftAssoc(Expr::Kind::kBinary, &Parser::AtPow, &Parser::ParseUnaryWithFilters);
  }

  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter) {
    ExprPtr node;
    if (IsOp("-") || IsOp("+")) {
      const Token& t = Next();
      const int line = t.line;
      const bool neg = t.value == "-";
      DepthGuard guard(&depth_);
      QRAG_RETURN_IF_ERROR(CheckDepth());
      QRAG_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(/*with_filter=*/false));
      node = Node(neg ? Expr::Kind::kNeg : Expr::Kind::kPos, line);
      node->children.push_back(std::move(operand));
      QRAG_ASSIGN_OR_RETURN(node, Finish(std::move(node)));
    } else {
      QRAG_ASSIGN_OR_RETURN(node, ParsePrimary());
    }
    QRAG_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
    if (with_filter) {
      QRAG_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> Literal(Value v, int line) {
    ExprPtr n = Node(Expr::Kind::kLiteral, line);
    n->literal = std::move(v);
    return Finish(std::move(n));
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    const Token& t = Peek();
    const int line = t.line;
    switch (t.type) {
      case TokenType::kName: {
        const std::string name = Next().value;
        if (name == "true" || name == "True") return Literal(Value::Bool(true), line);
        if (name == "false" || name == "False") return Literal(Value::Bool(false), line);
        if (name == "none" || name == "None") return Literal(Value::None(), line);
        ExprPtr n = Node(Expr::Kind::kName, line);
        n->name = name;
        return Finish(std::move(n));
      }
      case TokenType::kString: {
        std::string s = Next().value;
        while (Peek().type == TokenType::kString) s += Next().value;  // adjacent literals concatenate
        return Literal(Value::String(std::move(s)), line);
      }
      case TokenType::kInt:
        return Literal(Value::Int(Next().int_value), line);
      case TokenType::kFloat:
        return Literal(Value::Float(Next().float_value), line);
      case TokenType::kOperator:
        if (t.value == "(") {
          Next();
          QRAG_ASSIGN_OR_RETURN(ExprPtr e, ParseTuple(/*with_condexpr=*/true, {}, /*explicit_parens=*/true));
          QRAG_RETURN_IF_ERROR(ExpectOp(")"));
          return e;
        }
        if (t.value == "[") return ParseList();
        if (t.value == "{") return ParseDict();
        break;
      default:
        break;
    }
    return Fail(t, Cat("unexpected ", Describe(t)));
  }

  absl::StatusOr<ExprPtr> ParseList() {
    const int line = Next().line;  // '['
    ExprPtr n = Node(Expr::Kind::kList, line);
    while (!IsOp("]")) {
      if (!n->children.empty()) {
        QRAG_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp("]")) break;
      }
      QRAG_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(/*with_condexpr=*/true));
      n->children.push_back(std::move(item));
    }
    Next();  // ']'
    return Finish(std::move(n));
  }

  absl::StatusOr<ExprPtr> ParseDict() {
    const int line = Next().line;  // '{'
    ExprPtr n = Node(Expr::Kind::kDict, line);
    while (!IsOp("}")) {
      if (!n->children.empty()) {
        QRAG_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp("}")) break;
      }
      QRAG_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(/*with_condexpr=*/true));
      QRAG_RETURN_IF_ERROR(ExpectOp(":"));
      QRAG_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condexpr=*/true));
      n->children.push_back(std::move(key));
      n->children.push_back(std::move(value));
    }
    Next();  // '}'
    return Finish(std::move(n));
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOp(".") || IsOp("[")) {
        QRAG_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
      } else if (IsOp("(")) {
        QRAG_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOp("|")) {
        QRAG_ASSIGN_OR_RETURN(node, ParseFilters(std::move(node)));
      } else if (IsName("is")) {
        QRAG_ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
      } else if (IsOp("(")) {
        QRAG_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
      } else {
        return node;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node) {
    const Token& t = Next();
    const int line = t.line;
    if (t.value == ".") {
      const Token& attr = Peek();
      if (attr.type == TokenType::kName) {
        ExprPtr n = Node(Expr::Kind::kGetAttr, line);
        n->name = Next().value;
        n->children.push_back(std::move(node));
        return Finish(std::move(n));
      }
      if (attr.type == TokenType::kInt) {
        ExprPtr n = Node(Expr::Kind::kGetItem, line);
        n->children.push_back(std::move(node));
        QRAG_ASSIGN_OR_RETURN(ExprPtr index, Literal(Value::Int(Next().int_value), line));
        n->children.push_back(std::move(index));
        return Finish(std::move(n));
      }
      return Unexpected("a name or number after '.'");
    }
    // '[' subscript: an index, a slice, or (rarely) a tuple of them.
    std::vector<ExprPtr> args;
    while (!IsOp("]")) {
      if (!args.empty()) {
        QRAG_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp("]")) break;
      }
      QRAG_ASSIGN_OR_RETURN(ExprPtr arg, ParseSubscribed(line));
      args.push_back(std::move(arg));
    }
    QRAG_RETURN_IF_ERROR(ExpectOp("]"));
    if (args.empty()) return Fail(t, "expected a subscript");
    if (args.size() == 1 && args[0]->kind == Expr::Kind::kSlice) {
      // A slice: children were parsed as [null, start, stop, step]; put the object first.
      ExprPtr slice = std::move(args[0]);
      slice->children[0] = std::move(node);
      return Finish(std::move(slice));
    }
    for (const ExprPtr& arg : args) {
      if (arg->kind == Expr::Kind::kSlice) return Fail(t, "a slice inside a tuple subscript is not supported");
    }
    ExprPtr n = Node(Expr::Kind::kGetItem, line);
    n->children.push_back(std::move(node));
    if (args.size() == 1) {
      n->children.push_back(std::move(args[0]));
    } else {
      ExprPtr tuple = Node(Expr::Kind::kTuple, line);
      tuple->children = std::move(args);
      QRAG_ASSIGN_OR_RETURN(tuple, Finish(std::move(tuple)));
      n->children.push_back(std::move(tuple));
    }
    return Finish(std::move(n));
  }

  // One subscript: an expression, or a slice `start:stop:step` (any part optional). A slice comes back as
  // a kSlice node whose children are {null, start, stop, step}.
  absl::StatusOr<ExprPtr> ParseSubscribed(int line) {
    ExprPtr start;
    if (!IsOp(":")) {
      QRAG_ASSIGN_OR_RETURN(start, ParseExpression(/*with_condexpr=*/true));
      if (!IsOp(":")) return start;
    }
    Next();  // ':'
    ExprPtr stop, step;
    if (!IsOp("]") && !IsOp(",") && !IsOp(":")) {
      QRAG_ASSIGN_OR_RETURN(stop, ParseExpression(/*with_condexpr=*/true));
    }
    if (SkipOp(":")) {
      if (!IsOp("]") && !IsOp(",")) {
        QRAG_ASSIGN_OR_RETURN(step, ParseExpression(/*with_condexpr=*/true));
      }
    }
    ExprPtr n = Node(Expr::Kind::kSlice, line);
    n->children.push_back(nullptr);
    n->children.push_back(std::move(start));
    n->children.push_back(std::move(stop));
    n->children.push_back(std::move(step));
    return n;  // Finish() runs once the object is in place
  }

  // `( args )` after a callee, filter or test name: positional then keyword arguments.
  absl::Status ParseArgs(Expr* n) {
    QRAG_RETURN_IF_ERROR(ExpectOp("("));
    bool first = true;
    while (!IsOp(")")) {
      if (!first) {
        QRAG_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(")")) break;
      }
      first = false;
      if (IsOp("*") || IsOp("**")) return Fail(Peek(), "*args and **kwargs in calls are not supported");
      if (Peek().type == TokenType::kName && IsOp("=", 1)) {
        std::string name = Next().value;
        Next();
        QRAG_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condexpr=*/true));
        n->kwargs.emplace_back(std::move(name), std::move(value));
      } else {
        if (!n->kwargs.empty()) return Fail(Peek(), "positional argument follows keyword argument");
        QRAG_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(/*with_condexpr=*/true));
        n->children.push_back(std::move(value));
      }
    }
    Next();  // ')'
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParseCall(ExprPtr callee) {
    ExprPtr n = Node(Expr::Kind::kCall, Peek().line);
    n->children.push_back(std::move(callee));
    QRAG_RETURN_IF_ERROR(ParseArgs(n.get()));
    return Finish(std::move(n));
  }

  absl::StatusOr<std::string> ParseDottedName() {
    QRAG_ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (IsOp(".") && Peek(1).type == TokenType::kName) {
      Next();
      name += "." + Next().value;
    }
    return name;
  }

  // `| name(args) | name ...`; with start_inline the first filter has no leading pipe ({% filter %}).
  absl::StatusOr<ExprPtr> ParseFilters(ExprPtr node, bool start_inline = false) {
    while (IsOp("|") || start_inline) {
      if (!start_inline) Next();
      start_inline = false;
      const int line = Peek().line;
      ExprPtr n = Node(Expr::Kind::kFilter, line);
      QRAG_ASSIGN_OR_RETURN(n->name, ParseDottedName());
      n->children.push_back(std::move(node));
      if (IsOp("(")) QRAG_RETURN_IF_ERROR(ParseArgs(n.get()));
      QRAG_ASSIGN_OR_RETURN(node, Finish(std::move(n)));
    }
    return node;
  }

  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node) {
    const int line = Next().line;  // 'is'
    ExprPtr n = Node(Expr::Kind::kTest, line);
    n->negated = SkipName("not");
    QRAG_ASSIGN_OR_RETURN(n->name, ParseDottedName());
    n->children.push_back(std::move(node));
    const Token& t = Peek();
    if (IsOp("(")) {
      QRAG_RETURN_IF_ERROR(ParseArgs(n.get()));
    } else if ((t.type == TokenType::kName || t.type == TokenType::kString || t.type == TokenType::kInt ||
                t.type == TokenType::kFloat || IsOp("[") || IsOp("{")) &&
               !IsName("else") && !IsName("or") && !IsName("and")) {
      if (IsName("is")) return Fail(t, "You cannot chain multiple tests with is");
      // One argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
      QRAG_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
      QRAG_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
      n->children.push_back(std::move(arg));
    }
    return Finish(std::move(n));
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  const ParseOptions& options_;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

absl::StatusOr<Body> ParseTemplate(std::string_view source, const ParseOptions& options) {
  if (source.size() > options.max_source_bytes) {
    return absl::InvalidArgumentError(Cat("template source is ", source.size(),
                                                   " bytes, more than the limit of ", options.max_source_bytes));
  }
  LexOptions lex;
  lex.trim_blocks = options.trim_blocks;
  lex.lstrip_blocks = options.lstrip_blocks;
  QRAG_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source, lex));
  Parser parser(std::move(tokens), options);
  return parser.ParseAll();
}

}  // namespace qrag::jinja
