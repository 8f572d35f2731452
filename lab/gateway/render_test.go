package gateway

import "testing"

func TestRender(t *testing.T) {
	env := map[string]string{"GATEWAY_PORT": "8000", "SERVICE01_ADDR": "s1:8001", "HOME": "/root"}
	tests := []struct{ name, in, want string }{
		{"braced", "listen ${GATEWAY_PORT};", "listen 8000;"},
		{"bare", "server $SERVICE01_ADDR;", "server s1:8001;"},
		{"nginx variables untouched", "set $x $request_id; $host", "set $x $request_id; $host"},
		{"defined but filtered out", "root ${HOME};", "root ${HOME};"},
		{"undefined", "listen ${GATEWAY_OTHER};", "listen ${GATEWAY_OTHER};"},
		{"longest name wins", "$GATEWAY_PORTS", "$GATEWAY_PORTS"},
		{"unclosed brace", "${GATEWAY_PORT", "${GATEWAY_PORT"},
		{"lone dollar at end", "a $", "a $"},
		{"regex with braces kept", `"~^[a-z]{1,64}$" $x;`, `"~^[a-z]{1,64}$" $x;`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Render(tt.in, env, Filter)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Render(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRenderBadFilter(t *testing.T) {
	if _, err := Render("x", nil, "("); err == nil {
		t.Fatal("Render accepted an invalid filter")
	}
}
