// Forms the replica set and makes the platform's user, once; safe to run again (mongosh,
// run by the mongodb-init Job against mongodb-0, logged in as the root user).
//
// MONGODB_MEMBERS: how many members the StatefulSet runs (3; 1 in dev). Member i is
// mongodb-<i>.mongodb:27017, the names the platform's URI lists.
const admin = db.getSiblingDB("admin");
admin.auth(process.env.MONGO_ROOT_USERNAME, process.env.MONGO_ROOT_PASSWORD);

const count = parseInt(process.env.MONGODB_MEMBERS, 10);
if (!(count >= 1)) {
  throw new Error("MONGODB_MEMBERS must be a positive number");
}
const members = [];
for (let i = 0; i < count; i++) {
  // Member 0 starts as the preferred primary; the others may take over.
  members.push({ _id: i, host: `mongodb-${i}.mongodb:27017`, priority: i === 0 ? 2 : 1 });
}

function initiated() {
  try {
    rs.status();
    return true;
  } catch (e) {
    if (e.codeName === "NotYetInitialized") return false;
    throw e;
  }
}

if (initiated()) {
  print("replica set rs0 already initiated");
} else {
  print(`initiating replica set rs0 with ${count} member(s)`);
  rs.initiate({ _id: "rs0", members: members });
}

// Users are made on the primary: wait (up to 5 minutes) until the set has one, and reach
// it directly when it is another member (a later run, after a failover).
function primaryAdmin() {
  for (let i = 0; i < 300; i++) {
    const hello = db.hello();
    if (hello.isWritablePrimary) return admin;
    if (hello.primary) {
      const other = new Mongo(`mongodb://${hello.primary}/?directConnection=true`).getDB("admin");
      other.auth(process.env.MONGO_ROOT_USERNAME, process.env.MONGO_ROOT_PASSWORD);
      return other;
    }
    sleep(1000);
  }
  throw new Error("no primary after 5 minutes");
}

const database = process.env.SHUANGJIAN_MONGODB_DATABASE;
const user = process.env.SHUANGJIAN_MONGODB_USER;
const target = primaryAdmin().getSiblingDB(database);
if (target.getUser(user) === null) {
  // readWrite on its own database: collections, indexes, transactions, change streams.
  target.createUser({
    user: user,
    pwd: process.env.SHUANGJIAN_MONGODB_PASSWORD,
    roles: [{ role: "readWrite", db: database }],
  });
  print(`created user ${user} on ${database}`);
} else {
  print(`user ${user} exists`);
}
