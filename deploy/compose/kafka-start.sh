#!/usr/bin/env bash
# The compose file's Kafka broker, locked as the local stack's is (npo_deploy.kafka): clients
# and brokers authenticate with SASL/SCRAM-SHA-512, the controller with PLAIN, and an ACL
# authoriser lets each service's principal use only its own topics; the administrator creates
# the topics. kafka-acls.txt and kafka-topics.txt are generated from npo_platform.acl and
# npo_platform.topics (`npo k8s generate`). The passwords come from the environment (.env,
# made by `npo compose-env`); there is no default one.
set -euo pipefail
: "${NPO_KAFKA_ADMIN_PASSWORD:?run npo compose-env first}"
config=/tmp/server.properties
admin=npo-admin
cat > "$config" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@kafka:9093
controller.listener.names=CONTROLLER
listeners=INTERNAL://:9092,CONTROLLER://:9093,HOST://:19092
advertised.listeners=INTERNAL://kafka:9092,HOST://localhost:19092
listener.security.protocol.map=INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,HOST:SASL_PLAINTEXT
inter.broker.listener.name=INTERNAL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.internal.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$admin" password="$NPO_KAFKA_ADMIN_PASSWORD";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$admin" password="$NPO_KAFKA_ADMIN_PASSWORD" user_$admin="$NPO_KAFKA_ADMIN_PASSWORD";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:$admin
allow.everyone.if.no.acl.found=false
log.dirs=/var/lib/kafka/data
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
PROPERTIES
chmod 600 "$config"

# Every principal's SCRAM credentials go into the metadata when the storage is formatted.
users=(--add-scram "SCRAM-SHA-512=[name=$admin,password=$NPO_KAFKA_ADMIN_PASSWORD]")
for principal in npo-index npo-query npo-consent npo-audit npo-producer; do
  variable="NPO_KAFKA_$(echo "${principal#npo-}" | tr '[:lower:]' '[:upper:]')_PASSWORD"
  users+=(--add-scram "SCRAM-SHA-512=[name=$principal,password=${!variable:?run npo compose-env first}]")
done
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" -c "$config" "${users[@]}"

/opt/kafka/bin/kafka-server-start.sh "$config" &
broker=$!
client=/tmp/admin.properties
cat > "$client" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$admin" password="$NPO_KAFKA_ADMIN_PASSWORD";
PROPERTIES
chmod 600 "$client"
until /opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server kafka:9092 --command-config "$client" >/dev/null 2>&1; do
  sleep 1
done
# name, partitions, topic settings (key=value,…): one topic a line.
while read -r name partitions settings; do
  /opt/kafka/bin/kafka-topics.sh --bootstrap-server kafka:9092 --command-config "$client" \
    --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1 \
    $(for setting in ${settings//,/ }; do echo --config "$setting"; done) >/dev/null
done < /npo/kafka-topics.txt
# principal, resource type, name, pattern type, operations (a,b): one ACL a line; adding one
# that exists changes nothing.
while read -r principal kind name pattern operations; do
  /opt/kafka/bin/kafka-acls.sh --bootstrap-server kafka:9092 --command-config "$client" --add \
    --allow-principal "User:$principal" "--$kind" "$name" --resource-pattern-type "$pattern" \
    $(for operation in ${operations//,/ }; do echo --operation "$operation"; done) >/dev/null
done < /npo/kafka-acls.txt
touch /tmp/ready
wait "$broker"
