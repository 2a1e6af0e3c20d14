package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tollgate/tollgate/internal/ownedfs"
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
	shared, err := ownedfs.Ancestors(dir, uid)
	if err != nil {
		return fmt.Errorf("state directory %w: choose another --state-dir", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if why, _ := ownedfs.Foreign(fi, uid); why != "" {
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
			if why, fix := ownedfs.Foreign(fi, uid); why != "" {
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
