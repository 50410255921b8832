// Command-line flags of qrag's programs (qrag-server, qrag-run, qrag-quant, qrag-make-model, qrag), on CLI11.
//
// Each program keeps its flags in an options struct, registers them on a CLI::App made by NewApp with the
// helpers below (the generated --help shows every flag with its description and default), parses with
// ParseFlags (in-process, for tests) or ParseFlagsOrExit (main), then checks the struct with a Validate
// function of its own that returns INVALID_ARGUMENT with the message a user sees. What this gives every
// program alike:
//   - "--flag value" and "--flag=value"; a flag given twice keeps its last value (qrag-server's config files
//     rely on it: the file's flags come first, the command line's after; server/common/config_file.h), except
//     AddRepeated flags and positional arguments, which collect;
//   - numbers are read by absl, decimal only (CLI11's own conversion would read "010" as octal 8);
//   - a usage error prints "PROGRAM: MESSAGE" and "(run PROGRAM --help for usage)" on stderr and exits with
//     status 2, with our messages ("unknown option --x", "--x needs a value", "--x: 'y' is not a valid
//     number"), never CLI11's exit codes; --help (and `PROGRAM help` for programs with commands) prints the
//     help of the command given to stdout and exits 0.
// Header-only, as CLI11 is: the client and the server tools include it without another library.
#ifndef QRAG_SERVER_COMMON_CLI_H_
#define QRAG_SERVER_COMMON_CLI_H_

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace qrag::cli {

// Prints "PROGRAM: MSG" and a pointer to --help on stderr, and exits with status 2 (bad usage).
[[noreturn]] inline void UsageError(absl::string_view program, absl::string_view msg) {
  std::fprintf(stderr, "%.*s: %.*s\n(run %.*s --help for usage)\n", static_cast<int>(program.size()), program.data(),
               static_cast<int>(msg.size()), msg.data(), static_cast<int>(program.size()), program.data());
  std::exit(2);
}

// A usage error (exit 2) with the status's message unless it is OK.
inline void ExitOnUsageError(absl::string_view program, const absl::Status& status) {
  if (!status.ok()) UsageError(program, status.message());
}

namespace internal {

// `text` with its spaces turned into line breaks where a line would pass `width` (a longer word stays whole).
inline std::string Wrap(const std::string& text, size_t width) {
  std::string out;
  size_t line = 0;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (line > 0 && line + 1 + word.size() > width) {
      out += '\n';
      line = 0;
    } else if (line > 0) {
      out += ' ';
      ++line;
    }
    absl::StrAppend(&out, word);
    line += word.size();
  }
  return out;
}

// CLI11's help with the descriptions wrapped to 100 columns (CLI11 2.1 prints each on one line), one empty
// line between groups of flags (it prints two), and a program's footer only in its own help (commands inherit
// it).
class HelpFormatter : public CLI::Formatter {
 public:
  static constexpr size_t kWidth = 100;

  std::string make_help(const CLI::App* app, std::string name, CLI::AppFormatMode mode) const override {
    return absl::StrReplaceAll(CLI::Formatter::make_help(app, std::move(name), mode), {{"\n\n\n", "\n\n"}});
  }
  std::string make_description(const CLI::App* app) const override {
    return Wrap(CLI::Formatter::make_description(app), kWidth);
  }
  std::string make_footer(const CLI::App* app) const override {
    if (app->get_parent() != nullptr && app->get_parent()->get_footer() == app->get_footer()) return "";
    return Wrap(CLI::Formatter::make_footer(app), kWidth);
  }
  std::string make_option_desc(const CLI::Option* option) const override {
    return Wrap(CLI::Formatter::make_option_desc(option), kWidth - get_column_width());
  }
  std::string make_subcommand(const CLI::App* command) const override {
    std::stringstream out;
    CLI::detail::format_help(out, command->get_display_name(true),
                             Wrap(command->get_description(), kWidth - get_column_width()), get_column_width());
    return out.str();
  }
};

}  // namespace internal

// An app whose flags follow the conventions above. Make commands with app->add_subcommand after this: they
// inherit them.
inline std::unique_ptr<CLI::App> NewApp(const std::string& program, const std::string& description) {
  auto app = std::make_unique<CLI::App>(description, program);
  app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)->always_capture_default();
  app->allow_extras();  // unknown arguments are collected, and ParseFlags names the first in our words
  app->require_subcommand(0, 1);  // programs with commands run one: "study quantize" is not two
  app->group("Commands");         // what the help calls the commands (subcommands inherit it as their group)
  auto help = std::make_shared<internal::HelpFormatter>();
  help->column_width(34);
  help->label("Usage", "usage");
  help->label("SUBCOMMAND", "COMMAND");
  app->formatter(help);
  return app;
}

// `text` as a T (integer or floating point, decimal); false when it is not one.
template <typename T>
bool ParseNumber(absl::string_view text, T* value) {
  if constexpr (std::is_same_v<T, float>) {
    return absl::SimpleAtof(text, value);
  } else if constexpr (std::is_floating_point_v<T>) {
    return absl::SimpleAtod(text, value);
  } else {
    return absl::SimpleAtoi(text, value);
  }
}

namespace internal {

template <typename T>
CLI::Option* AddNumberOption(CLI::App& app, const std::string& name, std::function<void(T)> set,
                             const std::string& description) {
  CLI::Option* option = app.add_option(
      name,
      [set](const CLI::results_t& results) {
        T value{};
        ParseNumber(results.back(), &value);  // checked by the validator below
        set(value);
        return true;
      },
      description);
  // Every value given is checked, not only the last: "--x ten --x 5" is an error, as a typo should be.
  option->check(CLI::Validator(
      [](std::string& text) -> std::string {
        T value{};
        return ParseNumber(text, &value) ? std::string() : absl::StrCat("'", text, "' is not a valid number");
      },
      ""));
  option->type_name(std::is_floating_point_v<T> ? "FLOAT" : "INT");
  return option;
}

}  // namespace internal

// --name taking a number into *value; the help shows *value as the default.
template <typename T>
CLI::Option* AddNumber(CLI::App& app, const std::string& name, T* value, const std::string& description) {
  return internal::AddNumberOption<T>(app, name, [value](T v) { *value = v; }, description)
      ->default_str(absl::StrCat(*value));
}

// --name taking a number into *value, which stays empty when the flag is not given.
template <typename T>
CLI::Option* AddNumber(CLI::App& app, const std::string& name, std::optional<T>* value,
                       const std::string& description) {
  return internal::AddNumberOption<T>(app, name, [value](T v) { *value = v; }, description);
}

// --name taking a text into *value, which stays empty when the flag is not given ("--name ''" gives "").
inline CLI::Option* AddOptionalText(CLI::App& app, const std::string& name, std::optional<std::string>* value,
                                    const std::string& description) {
  return app
      .add_option(
          name,
          [value](const CLI::results_t& results) {
            *value = results.back();
            return true;
          },
          description)
      ->type_name("TEXT");
}

// Turns the text of a flag's value into a T; INVALID_ARGUMENT saying what is allowed when it is not one.
template <typename T>
using ValueParser = std::function<absl::StatusOr<T>(std::string_view)>;

// --name whose value `parse` turns into *value (an enum, usually); a value it rejects is a usage error
// "--name: <its message>". Chain ->default_str(...) to show the default.
template <typename T>
CLI::Option* AddParsed(CLI::App& app, const std::string& name, T* value, std::type_identity_t<ValueParser<T>> parse,
                       const std::string& description) {
  CLI::Option* option = app.add_option(
      name,
      [value, parse](const CLI::results_t& results) {
        *value = *parse(results.back());  // checked by the validator below
        return true;
      },
      description);
  option->check(CLI::Validator(
      [parse](std::string& text) -> std::string {
        absl::StatusOr<T> parsed = parse(text);
        return parsed.ok() ? std::string() : std::string(parsed.status().message());
      },
      ""));
  return option;
}

// --name taking one of the named values; the help lists them ("{a,b,c}") and the default (*value's name).
template <typename T>
CLI::Option* AddChoice(CLI::App& app, const std::string& name, T* value, std::vector<std::pair<std::string, T>> choices,
                       const std::string& description) {
  std::vector<std::string> names;
  std::string default_name;
  for (const auto& [choice, v] : choices) {
    names.push_back(choice);
    if (v == *value) default_name = choice;
  }
  ValueParser<T> parse = [choices, names](std::string_view text) -> absl::StatusOr<T> {
    for (const auto& [choice, v] : choices) {
      if (choice == text) return v;
    }
    return absl::InvalidArgumentError(
        absl::StrCat("'", std::string(text), "' is not one of ", absl::StrJoin(names, ", ")));
  };
  return AddParsed<T>(app, name, value, std::move(parse), description)
      ->type_name(absl::StrCat("{", absl::StrJoin(names, ","), "}"))
      ->default_str(default_name);
}

// --name that may be given many times; each gives one value, appended to *values.
inline CLI::Option* AddRepeated(CLI::App& app, const std::string& name, std::vector<std::string>* values,
                                const std::string& description) {
  return app.add_option(name, *values, description)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->allow_extra_args(false)  // "--stop a b": b is not a second stop string
      ->default_str("")
      ->type_name("TEXT");
}

// The arguments that are not flags, in order, into *values (`name` is how the help calls them).
inline CLI::Option* AddPositionals(CLI::App& app, const std::string& name, std::vector<std::string>* values,
                                   const std::string& description) {
  return app.add_option(name, *values, description)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
      ->default_str("")
      ->type_name("");
}

enum class Parsed { kFlags, kHelp };

namespace internal {

// The usage error for an argument nothing took, of `command` when not empty.
inline absl::Status Unexpected(const std::string& arg, const std::string& command) {
  const std::string where = command.empty() ? "" : absl::StrCat(" for '", command, "'");
  if (arg.size() > 1 && arg[0] == '-') {
    return absl::InvalidArgumentError(absl::StrCat("unknown option ", arg.substr(0, arg.find('=')), where));
  }
  return absl::InvalidArgumentError(absl::StrCat("unexpected argument '", arg, "'", where));
}

// CLI11 2.1 reads "--name=" as "--name" and takes the next argument as the value; config files write
// "--embedder=" for an empty value (server/common/config_file.h). Such an option of `app` or its commands gets
// its empty value as an argument of its own; a switch keeps "--name=".
inline std::vector<std::string> SeparateEmptyValues(CLI::App& app, const std::vector<std::string>& args) {
  std::vector<CLI::App*> apps = app.get_subcommands([](CLI::App*) { return true; });
  apps.push_back(&app);
  std::vector<std::string> out;
  for (const std::string& arg : args) {
    out.push_back(arg);
    if (arg.size() < 4 || arg.rfind("--", 0) != 0 || arg.find('=') != arg.size() - 1) continue;
    const std::string name = arg.substr(0, arg.size() - 1);
    for (const CLI::App* a : apps) {
      const CLI::Option* option = a->get_option_no_throw(name);
      if (option != nullptr && option->get_items_expected_max() > 0) {
        out.back() = name;
        out.push_back("");
        break;
      }
    }
  }
  return out;
}

}  // namespace internal

// Parses `args` (args[0] is the program, as in argv) into the flags registered on `app`. kHelp when --help
// (or, for an app with commands, `PROGRAM help`) was asked for: app.help() is then the text to print.
// INVALID_ARGUMENT with the message for the user on a usage error: an unknown option or command, a missing
// command or value, a value a flag's validator rejects.
inline absl::StatusOr<Parsed> ParseFlags(CLI::App& app, const std::vector<std::string>& args) {
  const std::vector<CLI::App*> commands = app.get_subcommands([](CLI::App*) { return true; });
  if (!commands.empty() && args.size() > 1 && args[1] == "help") return Parsed::kHelp;
  const std::vector<std::string> separated = internal::SeparateEmptyValues(app, args);
  std::vector<std::string> reversed(separated.rbegin(), separated.rend());  // CLI11 takes them last first
  if (!reversed.empty()) reversed.pop_back();                      // the program
  try {
    app.parse(reversed);
  } catch (const CLI::Success&) {
    return Parsed::kHelp;
  } catch (const CLI::ArgumentMismatch& e) {
    // CLI11 says "--flag: 1 required TYPE missing" when the arguments end before the value.
    const std::string what = e.what();
    return absl::InvalidArgumentError(absl::StrCat(what.substr(0, what.find(':')), " needs a value"));
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  std::vector<std::string> extra = app.remaining();
  if (!commands.empty() && app.get_subcommands().empty()) {
    std::vector<std::string> names;
    for (const CLI::App* c : commands) names.push_back(c->get_name());
    const std::string known = absl::StrCat(" (", absl::StrJoin(names, ", "), ")");
    if (extra.empty()) return absl::InvalidArgumentError(absl::StrCat("a command is required", known));
    if (extra[0].empty() || extra[0][0] != '-') {
      return absl::InvalidArgumentError(absl::StrCat("unknown command '", extra[0], "'", known));
    }
  }
  if (!extra.empty()) return internal::Unexpected(extra[0], "");
  for (const CLI::App* command : app.get_subcommands()) {
    extra = command->remaining();
    if (!extra.empty()) return internal::Unexpected(extra[0], command->get_name());
  }
  return Parsed::kFlags;
}

// ParseFlags for main(): prints the help and exits 0 when asked for it; exits with a usage error (2) on a bad
// command line, or when `validate` (the program's check of its parsed flags) fails.
inline void ParseFlagsOrExit(CLI::App& app, const std::vector<std::string>& args,
                             const std::function<absl::Status()>& validate = nullptr) {
  absl::StatusOr<Parsed> parsed = ParseFlags(app, args);
  if (!parsed.ok()) UsageError(app.get_name(), parsed.status().message());
  if (*parsed == Parsed::kHelp) {
    std::fputs(app.help().c_str(), stdout);
    std::exit(0);
  }
  if (validate != nullptr) ExitOnUsageError(app.get_name(), validate());
}

inline void ParseFlagsOrExit(CLI::App& app, int argc, char** argv,
                             const std::function<absl::Status()>& validate = nullptr) {
  ParseFlagsOrExit(app, std::vector<std::string>(argv, argv + argc), validate);
}

}  // namespace qrag::cli

#endif  // QRAG_SERVER_COMMON_CLI_H_
