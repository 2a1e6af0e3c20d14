package htpasswd

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/atomicfile"
)

// ParseGroups reads a groups file in the format of Apache's AuthGroupFile
// (mod_authz_groupfile): one "group: user1 user2 ..." line per group, and
// as in Apache a long group may be split over several lines with the same
// name. Blank lines and lines starting with "#" are skipped. It returns
// each user's groups, sorted; name is used in error messages. A user who
// is not in the htpasswd file is allowed: it may be added later.
func ParseGroups(name string, data []byte) (map[string][]string, error) {
	sets := map[string]map[string]bool{}
	// Lines, not a bufio.Scanner: a large group is one long line (its
	// 64 KiB limit is some 6,000 users), and the file is in memory already.
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		group, members, found := strings.Cut(line, ":")
		group = strings.TrimSpace(group)
		if !found || group == "" {
			return nil, fmt.Errorf("%s:%d: want group: user1 user2 ... (Apache's AuthGroupFile format)", name, n)
		}
		if strings.ContainsAny(group, " \t") {
			return nil, fmt.Errorf("%s:%d: group %q: a group name holds no space", name, n, group)
		}
		for _, user := range strings.Fields(members) {
			if sets[user] == nil {
				sets[user] = map[string]bool{}
			}
			sets[user][group] = true
		}
	}
	groups := make(map[string][]string, len(sets))
	for user, set := range sets {
		groups[user] = slices.Sorted(maps.Keys(set))
	}
	return groups, nil
}

// ReloadGroups re-reads the groups file. On error the previously loaded
// groups stay in force.
func (f *File) ReloadGroups() error {
	stamp := atomicfile.Stamp(f.groupsPath)
	data, err := os.ReadFile(f.groupsPath)
	if err != nil {
		return fmt.Errorf("htpasswd groups: %w", err)
	}
	groups, err := ParseGroups(f.groupsPath, data)
	if err != nil {
		return err
	}
	f.groups.Store(&groups)
	f.groupsStamp.Store(stamp)
	if f.OnReload != nil {
		f.OnReload() // identities remembered with their old groups go
	}
	return nil
}

// watchGroups is Watch for the groups file.
func (f *File) watchGroups(ctx context.Context, interval time.Duration, log *slog.Logger) {
	loaded := func() string { return f.groupsStamp.Load().(string) }
	atomicfile.Watch(ctx, interval, f.groupsPath, loaded, f.ReloadGroups, func(err error) {
		if err != nil {
			log.Error("htpasswd groups reload failed; keeping the loaded groups", "file", f.groupsPath, "err", err)
			return
		}
		log.Info("htpasswd groups reloaded", "file", f.groupsPath, "users", len(*f.groups.Load()))
	})
}

// groupsOf returns user's groups, a new slice that is never nil.
func (f *File) groupsOf(user string) []string {
	out := []string{}
	if g := f.groups.Load(); g != nil {
		out = append(out, (*g)[user]...)
	}
	return out
}
