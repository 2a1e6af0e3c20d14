package policies

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	opabundle "github.com/open-policy-agent/opa/v1/plugins/bundle"

	"github.com/tollgate/tollgate/internal/ownedfs"
)

// checkPersistence refuses a persistence directory that another user
// could write to, or move away and replace: the bundle plugin activates
// what it finds there before any download, and checks no signature on a
// bundle configured without one. The rules are development mode's for its
// state directory (ownedfs), with two allowances, so that a deployment is
// not refused for what it cannot change:
//   - a directory above it that every user can write, without the sticky
//     bit, is warned of: Kubernetes makes every emptyDir so (mode 0777);
//   - a directory of ours that its group can write is made g-w: OPA
//     creates its directories 0777 less the umask, so 0775 under umask
//     002. What a member of the group put there is not ours and is
//     refused; a group-writable file (OPA writes 0600) or a directory
//     every user can write is refused, as development mode does.
//
// Nothing is checked when nothing is persisted (no bundle with persist,
// no discovery, which can configure one): OPA reads nothing from there.
func (e *OPA) checkPersistence() error {
	if !e.persists() {
		return nil
	}
	dir, err := e.manager.Config.GetPersistenceDirectory()
	if err == nil {
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		return fmt.Errorf("persistence_directory: %w", err)
	}
	uid := os.Geteuid()
	if _, err := ownedfs.Ancestors(dir, uid); errors.Is(err, ownedfs.ErrWritableByEveryone) {
		e.log.Warn("persistence_directory: a user of this machine could replace the persisted bundles", "err", err)
	} else if err != nil {
		return fmt.Errorf("persistence_directory %w: a bundle planted there would be the policy", err)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if path == dir && errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := d.Info() // of a link itself: WalkDir follows none, not even dir
		if err == nil {
			fi, err = e.tighten(path, fi, uid)
		}
		if err != nil {
			return err
		}
		if why, fix := ownedfs.Foreign(fi, uid); why != "" {
			return fmt.Errorf("%s%s: %s (a bundle planted there would be the policy)", path, why, fix)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("persistence_directory: %w", err)
	}
	return nil
}

// persists reports whether OPA may read a persisted bundle.
func (e *OPA) persists() bool {
	if len(e.manager.Config.Discovery) > 0 {
		return true
	}
	if bp := opabundle.Lookup(e.manager); bp != nil {
		for _, s := range bp.Config().Bundles {
			if s.Persist {
				return true
			}
		}
	}
	return false // the singular bundle key is refused (rewrite)
}

// tighten removes the group write bit of a directory of ours that only
// its group (not every user) can write, and returns what it is now.
func (e *OPA) tighten(path string, fi fs.FileInfo, uid int) (fs.FileInfo, error) {
	perm := fi.Mode().Perm()
	if !fi.IsDir() || perm&0o020 == 0 || perm&0o002 != 0 || !ownedfs.Owns(fi, uid) {
		return fi, nil
	}
	if err := os.Chmod(path, perm&^0o020); err != nil {
		return nil, fmt.Errorf("%s: its group can write it (mode %#o), and chmod g-w failed: %w", path, perm, err)
	}
	e.log.Warn("persistence_directory: made g-w: its group could write it", "path", path, "was", fmt.Sprintf("%#o", perm))
	return os.Lstat(path)
}
