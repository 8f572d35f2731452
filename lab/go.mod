module pingpong/lab

go 1.26.0

require (
	github.com/caarlos0/env/v11 v11.4.2 // indirect
	github.com/compose-spec/compose-go/v2 v2.16.2 // indirect
	github.com/joho/godotenv v1.5.1 // indirect
	github.com/moby/patternmatcher v0.6.1 // indirect
	github.com/rabbitmq/amqp091-go v1.16.0 // indirect
	go.yaml.in/yaml/v4 v4.0.0-rc.4 // indirect
)
