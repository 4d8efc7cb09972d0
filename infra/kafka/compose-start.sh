#!/bin/sh
# The compose kafka service: one KRaft broker+controller whose clients must log in with SASL/SCRAM-SHA-512,
# with ACLs enforced (nothing is allowed without one). The services' SCRAM user is a super user (notify
# creates the providers' users and ACLs); providers get their own users with ACLs on their topic only.
#
# SCRAM credentials live in the cluster metadata, which the controller cannot read before it logs in,
# so the controller listener uses SASL/PLAIN with a static login. The storage is formatted once, with
# the services' credential; later starts reuse it.
set -eu

: "${KAFKA_SERVICES_USER:=mdd-services}"
: "${KAFKA_SERVICES_PASSWORD:?Falta / missing KAFKA_SERVICES_PASSWORD (mdd secrets init)}"
: "${KAFKA_CONTROLLER_PASSWORD:?Falta / missing KAFKA_CONTROLLER_PASSWORD (mdd secrets init)}"
: "${KAFKA_LIBS:=/opt/kafka/libs}"
: "${KAFKA_DATA_DIR:=/var/lib/kafka/data}"
: "${KAFKA_CONFIG_DIR:=/tmp/kafka-config}"
: "${KAFKA_ADVERTISED_HOST:=kafka}"
: "${KAFKA_LISTEN_HOST:=}"
: "${KAFKA_PORT:=9092}"
: "${KAFKA_CONTROLLER_PORT:=9093}"
: "${KAFKA_PARTITIONS:=6}"
: "${KAFKA_LOG4J_CONFIG:=/opt/kafka/config/log4j2.yaml}"
: "${KAFKA_HEAP_OPTS:=-Xms256m -Xmx1g}"

case "$KAFKA_SERVICES_USER$KAFKA_SERVICES_PASSWORD$KAFKA_CONTROLLER_PASSWORD" in
  *[!A-Za-z0-9._~-]*) echo "Usuario/contraseña de Kafka: solo [A-Za-z0-9._~-] / Kafka user and passwords: only [A-Za-z0-9._~-]" >&2; exit 2 ;;
esac

java_cp() { java $KAFKA_HEAP_OPTS "-Dlog4j2.configurationFile=$KAFKA_LOG4J_CONFIG" -cp "$KAFKA_LIBS/*" "$@"; }

mkdir -p "$KAFKA_CONFIG_DIR" "$KAFKA_DATA_DIR"
props="$KAFKA_CONFIG_DIR/server.properties"
scram="org.apache.kafka.common.security.scram.ScramLoginModule"
plain="org.apache.kafka.common.security.plain.PlainLoginModule"
cat > "$props" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=SASL_PLAINTEXT://$KAFKA_LISTEN_HOST:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=SASL_PLAINTEXT://$KAFKA_ADVERTISED_HOST:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$scram required username="$KAFKA_SERVICES_USER" password="$KAFKA_SERVICES_PASSWORD";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=$plain required username="controller" password="$KAFKA_CONTROLLER_PASSWORD" user_controller="$KAFKA_CONTROLLER_PASSWORD";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:$KAFKA_SERVICES_USER;User:controller
log.dirs=$KAFKA_DATA_DIR
num.partitions=$KAFKA_PARTITIONS
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
PROPERTIES

if [ ! -f "$KAFKA_DATA_DIR/meta.properties" ]; then
  cluster_id=$(java_cp kafka.tools.StorageTool random-uuid)
  java_cp kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$props" \
    --add-scram "SCRAM-SHA-512=[name=$KAFKA_SERVICES_USER,password=$KAFKA_SERVICES_PASSWORD]"
fi
exec java $KAFKA_HEAP_OPTS "-Dlog4j2.configurationFile=$KAFKA_LOG4J_CONFIG" -cp "$KAFKA_LIBS/*" kafka.Kafka "$props"
