// Package docs runs every command example of the documentation and of the
// CLI's --help texts against the built binary, so a broken example cannot
// land.
//
// What counts as an example:
//   - in README.md, policies/README.md and docs/*.md: a line of a ```sh block,
//     or a line starting with "$ " in a ```console block, whose command (or a
//     command of its pipeline) is `tollgate` or `./bin/tollgate`; a line ending
//     in `\` continues on the next;
//   - in `tollgate [COMMAND...] --help`: the lines after a line "Example:" or
//     "Examples:", up to the next blank line.
package docs
