package robot_test

import (
	"encoding/json"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/identity/robot"
)

// The input schema documents identity.claims.robot (definitions.robot_claims);
// what a robot's login puts there has exactly the documented keys.
func TestRobotClaimsHaveTheShapeTheInputSchemaDocuments(t *testing.T) {
	raw, err := os.ReadFile("../../policies/schema/input.json")
	if err != nil {
		t.Fatal(err)
	}
	type object struct {
		Required   []string
		Properties map[string]struct {
			Items *struct{ Properties map[string]any }
		}
	}
	var schema struct {
		Definitions struct {
			RobotClaims object `json:"robot_claims"`
		}
	}
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	doc := schema.Definitions.RobotClaims
	path := store(t)
	secret := create(t, path, "ci", time.Hour)
	c, err := robot.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Now = func() time.Time { return t0 }
	id, ok, err := login(t, c, "robot-ci", secret)
	if err != nil || !ok {
		t.Fatalf("login: %v %v", ok, err)
	}
	claims, _ := id.Claims["robot"].(map[string]any)
	if got, want := slices.Sorted(maps.Keys(claims)), slices.Sorted(maps.Keys(doc.Properties)); !slices.Equal(got, want) {
		t.Errorf("claims.robot has %v, the schema documents %v", got, want)
	}
	for _, k := range doc.Required {
		if _, ok := claims[k]; !ok {
			t.Errorf("claims.robot lacks the required %q", k)
		}
	}
	scopes, _ := claims["scopes"].([]any)
	first, _ := scopes[0].(map[string]any)
	if items := doc.Properties["scopes"].Items; items == nil || !slices.Equal(slices.Sorted(maps.Keys(first)), slices.Sorted(maps.Keys(items.Properties))) {
		t.Errorf("claims.robot.scopes[0] = %v, not the documented object", first)
	}
}
