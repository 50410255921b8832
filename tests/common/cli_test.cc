// The flag conventions every qrag program gets from server/common/cli.h, parsed in-process.
#include "server/common/cli.h"

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qrag::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

enum class Color { kRed, kGreen };

struct Flags {
  int n = 7;
  double x = 0.5;
  std::optional<uint64_t> seed;
  std::string name = "default-name";
  std::optional<std::string> text;
  std::vector<std::string> stop;
  Color color = Color::kGreen;
  bool on = false;
};

std::unique_ptr<CLI::App> FlagsApp(Flags* f) {
  std::unique_ptr<CLI::App> app = NewApp("prog", "A test program.");
  AddNumber(*app, "--n", &f->n, "a count");
  AddNumber(*app, "--x", &f->x, "a fraction");
  AddNumber(*app, "--seed", &f->seed, "a seed");
  app->add_option("--name", f->name, "a name");
  AddOptionalText(*app, "--text", &f->text, "a text");
  AddRepeated(*app, "--stop", &f->stop, "stop strings");
  AddChoice<Color>(*app, "--color", &f->color, {{"red", Color::kRed}, {"green", Color::kGreen}}, "a color");
  app->add_flag("--on", f->on, "a switch");
  return app;
}

// The message of parsing `args` (after the program name) into a fresh Flags; "" when it parses.
std::string ParseError(std::vector<std::string> args) {
  Flags f;
  std::unique_ptr<CLI::App> app = FlagsApp(&f);
  args.insert(args.begin(), "prog");
  absl::StatusOr<Parsed> parsed = ParseFlags(*app, args);
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(CliFlags, BothValueFormsAndTheLastValueWins) {
  Flags f;
  std::unique_ptr<CLI::App> app = FlagsApp(&f);
  ASSERT_EQ(*ParseFlags(*app, {"prog", "--n", "1", "--n=2", "--name=a", "--name", "b", "--x", "-0.25", "--on",
                               "--color=red", "--seed", "18446744073709551615", "--text="}),
            Parsed::kFlags);
  EXPECT_EQ(f.n, 2);
  EXPECT_EQ(f.name, "b");
  EXPECT_EQ(f.x, -0.25);
  EXPECT_TRUE(f.on);
  EXPECT_EQ(f.color, Color::kRed);
  EXPECT_EQ(f.seed, uint64_t{18446744073709551615u});
  EXPECT_EQ(f.text, "");  // given, empty
}

TEST(CliFlags, EmptyValueAfterEquals) {  // as config files write it: "embedder: ${QRAG_EMBEDDER:-}"
  Flags f;
  std::unique_ptr<CLI::App> app = FlagsApp(&f);
  ASSERT_EQ(*ParseFlags(*app, {"prog", "--name=", "--n=3", "--stop="}), Parsed::kFlags);
  EXPECT_EQ(f.name, "");
  EXPECT_EQ(f.n, 3);
  EXPECT_THAT(f.stop, ElementsAre(""));
  EXPECT_EQ(ParseError({"--n="}), "--n: '' is not a valid number");
}

TEST(CliFlags, DefaultsStayWhenNotGiven) {
  Flags f;
  std::unique_ptr<CLI::App> app = FlagsApp(&f);
  ASSERT_EQ(*ParseFlags(*app, {"prog"}), Parsed::kFlags);
  EXPECT_EQ(f.n, 7);
  EXPECT_EQ(f.seed, std::nullopt);
  EXPECT_EQ(f.text, std::nullopt);
  EXPECT_EQ(f.color, Color::kGreen);
}

TEST(CliFlags, NumbersAreDecimal) {
  Flags f;
  std::unique_ptr<CLI::App> app = FlagsApp(&f);
  ASSERT_EQ(*ParseFlags(*app, {"prog", "--n", "010"}), Parsed::kFlags);
  EXPECT_EQ(f.n, 10);  // CLI11 alone reads 8
  EXPECT_EQ(ParseError({"--n", "0x10"}), "--n: '0x10' is not a valid number");
}

TEST(CliFlags, RepeatedFlagCollectsOneValueEach) {
  Flags f;
  std::unique_ptr<CLI::App> app = FlagsApp(&f);
  ASSERT_EQ(*ParseFlags(*app, {"prog", "--stop", "a", "--stop=b", "--stop", "--c"}), Parsed::kFlags);
  EXPECT_THAT(f.stop, ElementsAre("a", "b", "--c"));  // a value may start with dashes
  EXPECT_EQ(ParseError({"--stop", "a", "b"}), "unexpected argument 'b'");
}

TEST(CliFlags, UsageErrorsInOurWords) {
  EXPECT_EQ(ParseError({"--n", "ten"}), "--n: 'ten' is not a valid number");
  EXPECT_EQ(ParseError({"--n", "ten", "--n", "3"}), "--n: 'ten' is not a valid number");  // every value checked
  EXPECT_EQ(ParseError({"--seed", "-1"}), "--seed: '-1' is not a valid number");
  EXPECT_EQ(ParseError({"--n"}), "--n needs a value");
  EXPECT_EQ(ParseError({"--bogus", "1"}), "unknown option --bogus");
  EXPECT_EQ(ParseError({"--bogus=1"}), "unknown option --bogus");
  EXPECT_EQ(ParseError({"stray"}), "unexpected argument 'stray'");
  EXPECT_EQ(ParseError({"--color", "blue"}), "--color: 'blue' is not one of red, green");
}

TEST(CliFlags, HelpListsEveryFlagWithItsDefault) {
  Flags f;
  std::unique_ptr<CLI::App> app = FlagsApp(&f);
  ASSERT_EQ(*ParseFlags(*app, {"prog", "--n", "3", "--help"}), Parsed::kHelp);
  Flags fresh;
  const std::string help = FlagsApp(&fresh)->help();
  EXPECT_THAT(help, HasSubstr("usage: prog [OPTIONS]"));
  EXPECT_THAT(help, HasSubstr("A test program."));
  EXPECT_THAT(help, HasSubstr("--n INT=7"));
  EXPECT_THAT(help, HasSubstr("--x FLOAT=0.5"));
  EXPECT_THAT(help, HasSubstr("--name TEXT=default-name"));
  EXPECT_THAT(help, HasSubstr("--color {red,green}=green"));
  EXPECT_THAT(help, HasSubstr("a count"));
  EXPECT_THAT(help, Not(HasSubstr("=[]")));
}

struct Commands {
  std::unique_ptr<CLI::App> app = NewApp("prog", "Commands.");
  CLI::App* a = app->add_subcommand("a", "the first");
  CLI::App* b = app->add_subcommand("b", "the second");
  int a_n = 0, b_n = 0;
  Commands() {
    AddNumber(*a, "--n", &a_n, "a's count");
    AddNumber(*b, "--only-b", &b_n, "b's count");
  }
  absl::Status Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "prog");
    absl::StatusOr<Parsed> parsed = ParseFlags(*app, args);
    return parsed.status();
  }
};

TEST(CliCommands, OneCommandWithItsFlags) {
  Commands c;
  ASSERT_TRUE(c.Parse({"b", "--only-b=4"}).ok());
  EXPECT_TRUE(c.b->parsed());
  EXPECT_FALSE(c.a->parsed());
  EXPECT_EQ(c.b_n, 4);
}

TEST(CliCommands, UsageErrors) {
  EXPECT_EQ(Commands().Parse({}).message(), "a command is required (a, b)");
  EXPECT_EQ(Commands().Parse({"c"}).message(), "unknown command 'c' (a, b)");
  EXPECT_EQ(Commands().Parse({"a", "--only-b", "1"}).message(), "unknown option --only-b for 'a'");
  EXPECT_EQ(Commands().Parse({"a", "b"}).message(), "unexpected argument 'b' for 'a'");
  EXPECT_EQ(Commands().Parse({"--n", "1", "a"}).message(), "unknown option --n");
}

TEST(CliCommands, HelpOfTheProgramAndOfACommand) {
  Commands c;
  EXPECT_EQ(*ParseFlags(*c.app, {"prog", "help"}), Parsed::kHelp);
  EXPECT_THAT(c.app->help(), HasSubstr("Commands:"));
  Commands d;
  EXPECT_EQ(*ParseFlags(*d.app, {"prog", "a", "--help"}), Parsed::kHelp);
  EXPECT_THAT(d.app->help(), HasSubstr("usage: prog a [OPTIONS]"));
  EXPECT_THAT(d.app->help(), HasSubstr("a's count"));
}

}  // namespace
}  // namespace qrag::cli
