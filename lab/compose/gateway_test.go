package compose

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"pingpong/lab/gateway"
	"pingpong/lab/runner"
)

// nginxBinary is Debian's nginx, which `make deps` installs (or the
// sysroot's, in make test's second round).
const nginxBinary = "/usr/sbin/nginx"

// mustTemplate reads the gateway template the nginx service mounts.
func mustTemplate(tb testing.TB) string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(tb), "nginx", "templates", "gateway.conf.template"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(data)
}

// mustNginxEnv returns the nginx container's environment as compose sets it.
func mustNginxEnv(tb testing.TB) map[string]string {
	tb.Helper()
	return containerEnv(mustService(tb, mustLoadProject(tb, mustEnvExample(tb)), "nginx"))
}

func TestEnvsubstFilterIsGatewayFilter(t *testing.T) {
	env := mustNginxEnv(t)
	if got := env["NGINX_ENVSUBST_FILTER"]; got != gateway.Filter {
		t.Errorf("nginx NGINX_ENVSUBST_FILTER = %q, want gateway.Filter %q: compose and the native lab must substitute the same variables", got, gateway.Filter)
	}
}

// nginxVars matches nginx's own variables, which are lower case.
var nginxVars = regexp.MustCompile(`\$[a-z_][a-z0-9_]*`)

func TestTemplateRendersAsInTheImage(t *testing.T) {
	env := mustNginxEnv(t)
	template := mustTemplate(t)
	rendered, err := gateway.Render(template, env, env["NGINX_ENVSUBST_FILTER"])
	if err != nil {
		t.Fatal(err)
	}
	filter := regexp.MustCompile(env["NGINX_ENVSUBST_FILTER"])
	for name := range references(rendered) {
		if filter.MatchString(name) {
			t.Errorf("rendered gateway still refers to $%s:\n%s", name, linesWith(rendered, name))
		}
	}
	for _, want := range []string{
		"listen " + env["GATEWAY_LISTEN"] + ";",
		"server " + env["SERVICE01_ADDR"] + ";",
		"server " + env["SERVICE02_ADDR"] + ";",
		"access_log " + env["GATEWAY_ACCESS_LOG"] + ";",
	} {
		if !strings.Contains(rendered, want) {
			t.Errorf("rendered gateway lacks %q", want)
		}
	}
	// nginx's own variables are untouched: the same ones, as many times.
	if got, want := countMatches(nginxVars, rendered), countMatches(nginxVars, template); !maps.Equal(got, want) {
		t.Errorf("nginx variables changed by rendering:\n got %v\nwant %v", got, want)
	}
	if !strings.Contains(rendered, "$request_id") || !strings.Contains(rendered, "$lab_request_id") {
		t.Error("rendered gateway lost $request_id or $lab_request_id")
	}

	t.Run("envsubst", func(t *testing.T) {
		// The image's /docker-entrypoint.d/20-envsubst-on-templates.sh, its
		// two lines that matter, run on the same environment plus variables
		// the filter must keep out.
		if _, err := exec.LookPath("envsubst"); err != nil {
			t.Skip("envsubst is not installed (gettext-base); gateway.Render was checked alone")
		}
		const script = `filter="${NGINX_ENVSUBST_FILTER:-}"
defined_envs=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" < /dev/null ))
envsubst "$defined_envs" < "$1"`
		dir := t.TempDir()
		path := filepath.Join(dir, "default.conf.template")
		if err := os.WriteFile(path, []byte(template), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), "sh", "-c", script, "sh", path)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "HOSTNAME=nginx", "NGINX_VERSION=1.30.0"}
		for name, value := range env {
			cmd.Env = append(cmd.Env, name+"="+value)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("envsubst: %v\n%s", err, stderr.String())
		}
		if string(out) != rendered {
			t.Errorf("the image's envsubst and gateway.Render disagree:\n%s", lineDiff(string(out), rendered))
		}
	})
}

// references returns the names of the $NAME and ${NAME} references in s, as
// envsubst sees them.
func references(s string) map[string]bool {
	names := map[string]bool{}
	for _, m := range shellVars.FindAllStringSubmatch(s, -1) {
		names[m[1]+m[2]] = true
	}
	return names
}

var shellVars = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// TestNginxEnvMatchesTemplate checks that compose gives nginx every variable
// the template substitutes, and none it does not.
func TestNginxEnvMatchesTemplate(t *testing.T) {
	env := mustNginxEnv(t)
	filter := regexp.MustCompile(gateway.Filter)
	used := map[string]bool{}
	for name := range references(mustTemplate(t)) {
		if filter.MatchString(name) {
			used[name] = true
		}
	}
	if len(used) == 0 {
		t.Fatal("the template refers to no variable the filter lets through")
	}
	for name := range used {
		if _, ok := env[name]; !ok {
			t.Errorf("the gateway template uses ${%s}, which compose does not set for nginx", name)
		}
	}
	for name := range env {
		if filter.MatchString(name) && !used[name] {
			t.Errorf("compose sets %s for nginx, which the template does not use", name)
		}
	}
}

func countMatches(re *regexp.Regexp, s string) map[string]int {
	n := map[string]int{}
	for _, m := range re.FindAllString(s, -1) {
		n[m]++
	}
	return n
}

func linesWith(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimRight(line, "\n"))
		}
	}
	return strings.Join(out, "\n")
}

// imageMainConf mirrors the official image's /etc/nginx/nginx.conf, with
// every path it writes moved into dir so that nginx -t runs as any user.
// There is no user directive (it needs root) and the pid comes from -g.
func imageMainConf(dir string) string {
	return fmt.Sprintf(`worker_processes  auto;

events {
    worker_connections  1024;
}

http {
    include       %[2]s;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  %[1]s/access.log  main;

    client_body_temp_path %[1]s/client_body;
    proxy_temp_path       %[1]s/proxy;
    fastcgi_temp_path     %[1]s/fastcgi;
    uwsgi_temp_path       %[1]s/uwsgi;
    scgi_temp_path        %[1]s/scgi;

    sendfile        on;
    keepalive_timeout  65;

    include %[1]s/conf.d/*.conf;
}
`, dir, filepath.Join(dir, "mime.types"))
}

// TestNginxAcceptsRenderedGateway gives the gateway, rendered from the
// compose environment, to a real nginx -t inside the image's main config.
func TestNginxAcceptsRenderedGateway(t *testing.T) {
	if _, err := os.Stat(runner.Sysroot() + nginxBinary); err != nil {
		t.Fatalf("nginx is not installed (%s): run make deps", runner.Sysroot()+nginxBinary)
	}
	dir := t.TempDir()
	env := mustNginxEnv(t)
	// service01 and service02 only resolve in Docker's DNS, and nginx -t
	// resolves upstream hosts, so only for this run they become loopback
	// addresses with the same ports. Name resolution is the one part only a
	// real `docker compose up` proves. The access log moves into dir and
	// keeps its format, lab_json.
	for _, name := range []string{"SERVICE01_ADDR", "SERVICE02_ADDR"} {
		host, port, ok := strings.Cut(env[name], ":")
		if !ok || (host != "service01" && host != "service02") {
			t.Fatalf("%s = %q, want service0N:port", name, env[name])
		}
		env[name] = "127.0.0.1:" + port
	}
	logPath, format, ok := strings.Cut(env["GATEWAY_ACCESS_LOG"], " ")
	if !ok || logPath != "/var/log/nginx/access.log" {
		t.Fatalf("GATEWAY_ACCESS_LOG = %q, want the image's stdout link and a format", env["GATEWAY_ACCESS_LOG"])
	}
	env["GATEWAY_ACCESS_LOG"] = filepath.Join(dir, "gateway-access.log") + " " + format

	rendered, err := gateway.Render(mustTemplate(t), env, env["NGINX_ENVSUBST_FILTER"])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"conf.d/default.conf": rendered,
		"nginx.conf":          imageMainConf(dir),
		"mime.types":          mimeTypes(),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := runner.SystemCommand(t.Context(), nginxBinary, "-t",
		"-p", dir+"/",
		"-c", filepath.Join(dir, "nginx.conf"),
		"-e", filepath.Join(dir, "error.log"),
		"-g", "pid "+filepath.Join(dir, "nginx.pid")+";")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t rejects the gateway as compose renders it: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "test is successful") {
		t.Errorf("nginx -t said:\n%s", out)
	}
}

// mimeTypes returns the host's mime.types, which the image's nginx.conf
// includes, or a minimal one.
func mimeTypes() string {
	data, err := os.ReadFile("/etc/nginx/mime.types")
	if err != nil {
		return "types {\n    text/html html;\n    application/json json;\n}\n"
	}
	return string(data)
}
