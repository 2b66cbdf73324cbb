// The healthcheck of the compose stack's `mongodb` (docker-compose.yml runs it with
// `mongosh --file`). The platform needs a replica set (transactions per read-model batch,
// majority concerns), so the server starts with --replSet rs0; this check initiates the
// one-member set on the first start, and says healthy only once the member is PRIMARY
// (the services, projector and gateway wait for that: depends_on service_healthy).
// The member's host must be the name the other containers reach it by: the compose service
// `mongodb`, as in SHUANGJIAN_MONGODB_URI (tests/deploy/test_compose.py checks the three
// agree). Exit 0: healthy; 1: not yet (or mongosh could not connect: non-zero as well).
const REPLICA_SET = "rs0";
const MEMBER = "mongodb:27017";

let initiated = true;
try {
  rs.status();
} catch (error) {
  if (error.codeName !== "NotYetInitialized" && error.code !== 94) {
    throw error;
  }
  rs.initiate({ _id: REPLICA_SET, members: [{ _id: 0, host: MEMBER }] });
  initiated = false; // elected within seconds: the next check says healthy
}
quit(initiated && db.hello().isWritablePrimary ? 0 : 1);
