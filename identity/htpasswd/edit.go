package htpasswd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/tollgate/tollgate/internal/atomicfile"
)

// ErrNoSuchUser is returned by Remove and Verify for a user not in the file.
var ErrNoSuchUser = errors.New("no such user")

// Set adds user with password to the htpasswd file at path, replacing an
// existing entry, creating the file (mode 0600) if needed.
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
	entry := user + ":" + string(hash)
	return editLines(path, func(lines []string) ([]string, error) {
		for i, l := range lines {
			if lineUser(l) == user {
				lines[i] = entry
				return lines, nil
			}
		}
		return append(lines, entry), nil
	})
}

// Remove deletes user from the htpasswd file at path.
func Remove(path, user string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	return editLines(path, func(lines []string) ([]string, error) {
		kept := lines[:0]
		for _, l := range lines {
			if lineUser(l) != user {
				kept = append(kept, l)
			}
		}
		if len(kept) == len(lines) {
			return nil, fmt.Errorf("%s: %w %q", path, ErrNoSuchUser, user)
		}
		return kept, nil
	})
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

// editLines changes the file's lines under a lock (concurrent edits lose
// nothing) and replaces it atomically (mode 0600), so a running broker
// never reads half of it. Other lines, comments included, are kept.
func editLines(path string, change func([]string) ([]string, error)) error {
	return atomicfile.Edit(path, 0o600, func(old []byte) ([]byte, error) {
		var lines []string
		if data := bytes.TrimRight(old, "\n"); len(data) > 0 {
			lines = strings.Split(string(data), "\n")
		}
		lines, err := change(lines)
		if err != nil {
			return nil, err
		}
		content := strings.Join(lines, "\n")
		if content != "" {
			content += "\n"
		}
		return []byte(content), nil
	})
}
