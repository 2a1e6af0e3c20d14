package htpasswd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// ErrNoSuchUser is returned by Remove and Verify for a user not in the file.
var ErrNoSuchUser = errors.New("no such user")

// Set adds user with password to the htpasswd file at path, replacing an
// existing entry, creating the file (mode 0600) if needed. Other lines,
// comments included, are kept. The file is replaced atomically so a running
// broker never reads half of it.
func Set(path, user, password string, cost int) error {
	if user == "" || strings.ContainsAny(user, ":\n\r") {
		return fmt.Errorf("invalid user name %q", user)
	}
	if password == "" {
		return errors.New("empty password")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return err
	}
	lines, err := readLines(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	entry := user + ":" + string(hash)
	replaced := false
	for i, l := range lines {
		if lineUser(l) == user {
			lines[i], replaced = entry, true
		}
	}
	if !replaced {
		lines = append(lines, entry)
	}
	return writeLines(path, lines)
}

// Remove deletes user from the htpasswd file at path.
func Remove(path, user string) error {
	lines, err := readLines(path)
	if err != nil {
		return err
	}
	kept := lines[:0]
	for _, l := range lines {
		if lineUser(l) != user {
			kept = append(kept, l)
		}
	}
	if len(kept) == len(lines) {
		return fmt.Errorf("%s: %w %q", path, ErrNoSuchUser, user)
	}
	return writeLines(path, kept)
}

// Verify reports whether password is user's password in the file at path.
func Verify(path, user, password string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	users, err := Parse(path, data)
	if err != nil {
		return false, err
	}
	hash, ok := users[user]
	if !ok {
		return false, fmt.Errorf("%s: %w %q", path, ErrNoSuchUser, user)
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil, nil
}

func lineUser(line string) string {
	l := strings.TrimSpace(line)
	if l == "" || strings.HasPrefix(l, "#") {
		return ""
	}
	u, _, _ := strings.Cut(l, ":")
	return u
}

func readLines(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimRight(data, "\n")
	if len(data) == 0 {
		return nil, nil
	}
	return strings.Split(string(data), "\n"), nil
}

func writeLines(path string, lines []string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".htpasswd-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	content := strings.Join(lines, "\n")
	if content != "" {
		content += "\n"
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
