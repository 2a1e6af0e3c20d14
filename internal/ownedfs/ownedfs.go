// Package ownedfs checks that a directory tollgate trusts (development
// mode's state, OPA's persisted bundles) can be changed by no other user.
package ownedfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Ancestors refuses a directory that another user can move away and
// replace: every directory above dir (dir absolute; those not made yet
// are skipped) must be owned by uid or root, and writable by every user
// only with the sticky bit (like /tmp). It reports whether the parent is
// such a shared directory: then dir itself must be mode 0700. A
// group-writable ancestor is accepted: it is usually a checkout or a
// service's home, whose group can change what is run anyway.
//
// A directory above that every user can write without the sticky bit is
// reported last, wrapping ErrWritableByEveryone, after every other check
// passed: a caller that must accept it (a Kubernetes emptyDir) loses none.
func Ancestors(dir string, uid int) (shared bool, err error) {
	var everyones error
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist) && d != filepath.Dir(d):
			continue // made later, by whoever checked
		case err != nil:
			return false, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false, fmt.Errorf("%s: the owner of %s is unknown", dir, d)
		}
		if int(st.Uid) != uid && st.Uid != 0 {
			return false, fmt.Errorf("%s is inside %s, which belongs to another user (uid %d), who can replace it", dir, d, st.Uid)
		}
		everyone := fi.Mode().Perm()&0o002 != 0
		if everyone && fi.Mode()&fs.ModeSticky == 0 && everyones == nil {
			everyones = fmt.Errorf("%s is inside %s: %w", dir, d, ErrWritableByEveryone)
		}
		if d == filepath.Dir(dir) {
			shared = everyone
		}
		if d == filepath.Dir(d) {
			return shared, everyones
		}
	}
}

// ErrWritableByEveryone is a directory every user can write, without the
// sticky bit (like /tmp has): anyone can rename what is in it.
var ErrWritableByEveryone = errors.New("every user can write it and it has no sticky bit, so anyone can replace it")

// Owns reports whether uid owns the file fi describes.
func Owns(fi fs.FileInfo, uid int) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}

// Foreign says why the file fi describes (from Lstat) is not uid's alone,
// and how to fix that, or returns "" when it is: a symbolic link (its
// target is anyone's), another owner, a group or world write bit, or
// something other than a regular file or a directory.
func Foreign(fi fs.FileInfo, uid int) (why, fix string) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return " is a symbolic link, which is not followed", "remove it (or put what it points to in its place)"
	case !ok:
		return ": its owner is unknown", "remove it"
	case int(st.Uid) != uid:
		return fmt.Sprintf(" is owned by uid %d, not you (uid %d)", st.Uid, uid), "remove it"
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Sprintf(": other users can write it (mode %#o)", fi.Mode().Perm()), "remove it, or chmod go-w it if you made it"
	case !fi.Mode().IsRegular() && !fi.IsDir():
		return " is not a regular file or directory", "remove it"
	}
	return "", ""
}
