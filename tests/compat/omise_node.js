// The official Omise Node library, unmodified, against the linkbatch sandbox.
// Usage: node omise_node.js HOST   (the library has no port setting: the sandbox must listen on port 80)
const omise = require('omise')({
  secretKey: 'skey_test_' + 'nodecompat',
  host: process.argv[2],
  scheme: 'http',
  omiseVersion: '2019-05-29',
});

(async () => {
  const link = await omise.links.create({
    amount: 10000, currency: 'thb', title: 'Hot Latte', description: 'A warm cup of coffee', multiple: true,
  });
  if (!link.id.startsWith('link_test_') || link.amount !== 10000) throw new Error('create: ' + JSON.stringify(link));
  const again = await omise.links.retrieve(link.id);
  if (again.id !== link.id) throw new Error('retrieve: ' + JSON.stringify(again));
  const list = await omise.links.list();
  if (!list.data.some((l) => l.id === link.id)) throw new Error('list: ' + JSON.stringify(list));
  try {
    await omise.links.create({amount: 10000, currency: 'eur', title: 'x', description: 'y'});
    throw new Error('eur was accepted');
  } catch (e) {
    if (e.code !== 'invalid_currency') throw e;
  }
  console.log('omise-node: create, retrieve, list and errors OK against', process.argv[2]);
})().catch((e) => { console.error(e); process.exit(1); });
