package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// checkDevState refuses a development state directory that another user
// could have prepared or can still change: development mode signs with the
// key it finds there, lets in the users of its htpasswd and writes the
// passwords it generates there. dir is absolute, with no links in it.
//
// The directory and every entry development mode reads or writes must be
// ours, writable by nobody else, and no symbolic link. The directories
// above it must be ours or root's, and writable by others only with the
// sticky bit (like /tmp); under such a parent the directory must be 0700. A group-writable parent is accepted: it is
// usually the checkout, whose group can change what is run anyway.
func checkDevState(dir string) error {
	uid := os.Geteuid()
	shared, err := checkAncestors(dir, uid)
	if err != nil {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if why, _ := foreign(fi, uid); why != "" {
		return fmt.Errorf("state directory %s%s: remove it or choose another --state-dir", dir, why)
	}
	if perm := fi.Mode().Perm(); shared && perm&0o077 != 0 {
		return fmt.Errorf("state directory %s is in %s, which every user can write, so it must be mode 0700 (it is %#o): chmod 700 %[1]s, or choose another --state-dir", dir, filepath.Dir(dir), perm)
	}
	// registry-data is not here: the registry owns it, tollgate never reads it.
	for _, name := range []string{"config.yaml", "keys", "htpasswd", "htpasswd.lock", "passwords.txt", "policy",
		"registry.yml", "registry-bundle.pem", "revocations.json", "revocations.json.lock"} {
		top := filepath.Join(dir, name)
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if p == top && errors.Is(err, fs.ErrNotExist) {
				return nil // made on first start
			}
			if err != nil {
				return err
			}
			fi, err := d.Info() // of the link itself: WalkDir follows none
			if err != nil {
				return err
			}
			if why, fix := foreign(fi, uid); why != "" {
				return fmt.Errorf("%s%s: %s, or choose another --state-dir", p, why, fix)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// checkAncestors refuses a state directory that another user can move
// away and replace: every directory above it must be owned by us or root,
// and writable by every user only with the sticky bit (like /tmp). It
// reports whether the parent is such a shared directory.
func checkAncestors(dir string, uid int) (shared bool, err error) {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return false, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false, fmt.Errorf("state directory %s: the owner of %s is unknown: choose another --state-dir", dir, d)
		}
		if int(st.Uid) != uid && st.Uid != 0 {
			return false, fmt.Errorf("state directory %s is inside %s, which belongs to another user (uid %d), who can replace it: choose another --state-dir", dir, d, st.Uid)
		}
		everyone := fi.Mode().Perm()&0o002 != 0
		if everyone && fi.Mode()&fs.ModeSticky == 0 {
			return false, fmt.Errorf("state directory %s is inside %s: every user can write it and it has no sticky bit, so anyone can replace the state directory: choose another --state-dir", dir, d)
		}
		if d == filepath.Dir(dir) {
			shared = everyone
		}
		if d == filepath.Dir(d) {
			return shared, nil
		}
	}
}

// foreign says why the file fi describes (from Lstat) is not ours alone,
// and how to fix that, or returns "" when it is.
func foreign(fi fs.FileInfo, uid int) (why, fix string) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return " is a symbolic link, which development mode does not follow", "remove it (or put what it points to in its place)"
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
