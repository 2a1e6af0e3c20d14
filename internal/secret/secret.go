// Package secret holds configuration secrets: a type that never prints, and
// the one way a secret is given (the value, an environment variable, a file).
package secret

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Secret is a configuration value that must never be printed or logged.
type Secret string

const redacted = "[redacted]"

// String redacts the secret in fmt output.
func (Secret) String() string { return redacted }

// GoString redacts the secret in %#v output.
func (Secret) GoString() string { return redacted }

// LogValue redacts the secret in slog output.
func (Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// Check says whether at most one of the three forms of a secret (KEY,
// KEY_env, KEY_file) is given; the configuration's Validate calls it, so a
// conflict is found when the file is loaded. It does not read anything.
func Check(value Secret, env, file string) error {
	set := 0
	for _, s := range []string{string(value), env, file} {
		if s != "" {
			set++
		}
	}
	if set > 1 {
		return errors.New("give only one of the value, _env and _file")
	}
	return nil
}

// Given reports whether any form of the secret is given.
func Given(value Secret, env, file string) bool {
	return value != "" || env != "" || file != ""
}

// Key is the key a secret named name was given by (name, name_env or
// name_file), for an error about it.
func Key(name, env, file string) string {
	switch {
	case env != "":
		return name + "_env"
	case file != "":
		return name + "_file"
	}
	return name
}

// Resolve takes a secret from exactly one of: the value, an environment
// variable, or a file (relative to baseDir; trailing newline removed).
// Secrets never come from the command line.
func Resolve(value Secret, env, file, baseDir string) (Secret, error) {
	if err := Check(value, env, file); err != nil {
		return "", err
	}
	switch {
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return Secret(v), nil
	case file != "":
		if !filepath.IsAbs(file) {
			file = filepath.Join(baseDir, file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return Secret(strings.TrimRight(string(data), "\r\n")), nil
	}
	return value, nil
}
