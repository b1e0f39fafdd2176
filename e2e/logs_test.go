package e2e

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLogFormatAndLevel: PAPO_LOG_FORMAT=json makes every line of the log
// one JSON object, the access lines with their fields; PAPO_LOG_LEVEL=warn
// drops the informational lines, the access log's among them, and keeps
// the warnings.
func TestLogFormatAndLevel(t *testing.T) {
	t.Run("json", func(t *testing.T) {
		srv := StartServer(t, "PAPO_LOG_FORMAT=json")
		ana := srv.Register(t, "ana")
		ana.Say(t, "general", "hello")
		srv.Stop()
		var access []map[string]any
		for _, line := range strings.Split(strings.TrimSpace(srv.Log()), "\n") {
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("a line that is not JSON: %q (%v)", line, err)
			}
			if entry["level"] == nil || entry["msg"] == nil || entry["time"] == nil {
				t.Fatalf("a line without time, level and msg: %q", line)
			}
			if entry["msg"] == "request" {
				access = append(access, entry)
			}
		}
		var posted bool
		for _, e := range access {
			if e["method"] == "POST" && e["path"] == "/rooms/general/messages" && e["status"] == float64(201) &&
				e["route"] == "/rooms/:room/messages" && e["request_id"] != "" {
				posted = true
			}
		}
		if !posted {
			t.Fatalf("no access line for the post among %d: %v", len(access), access)
		}
	})
	t.Run("warn", func(t *testing.T) {
		// A profiling listener open beyond loopback is warned about.
		_, port, _ := net.SplitHostPort(freeAddr(t))
		srv := StartServer(t, "PAPO_LOG_LEVEL=warn", "PAPO_PPROF_ADDR=0.0.0.0:"+port)
		ana := srv.Register(t, "ana")
		ana.Say(t, "general", "hello")
		srv.Stop()
		log := srv.Log()
		for _, quiet := range []string{"msg=request", "papo listening", "msg=stopped"} {
			if strings.Contains(log, quiet) {
				t.Fatalf("at warn the log has %q:\n%s", quiet, log)
			}
		}
		if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "PAPO_PPROF_ADDR is not a loopback address") {
			t.Fatalf("at warn the warning is gone:\n%s", log)
		}
	})
	t.Run("a bad value stops the start", func(t *testing.T) {
		cmd := exec.Command(serverBinary(t))
		cmd.Env = append(os.Environ(), "PAPO_ADDR="+freeAddr(t), "DATABASE_URL=sqlite:"+filepath.Join(t.TempDir(), "papo.db"),
			"REDIS_URL=", "PAPO_LOG_FORMAT=xml")
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "PAPO_LOG_FORMAT") {
			t.Fatalf("papo with PAPO_LOG_FORMAT=xml: %v\n%s", err, out)
		}
	})
}
