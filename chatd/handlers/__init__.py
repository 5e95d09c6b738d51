"""The business rules, transport-agnostic: each handler module answers a few msgids for a
`Session`, built from the node's `Context` (context.py) and never from another handler.

    accounts.py       REG, LOGIN (password or token), LOGOUT, DEVICES, HEARTBEAT; sessions ending
    welcome.py        the login reply and the offline messages it carries
    social.py         friends and groups: ADD_FRIEND, CREATE_GROUP, ADD_GROUP, the lists
    chat.py           ONE_CHAT, GROUP_CHAT, RECV_ACK: stamping, delivery, SEND_ACK
    conversations.py  HISTORY, SYNC, READ, TYPING
    relations.py      REMOVE_FRIEND, LEAVE_GROUP, KICK_MEMBER, BLOCK
    operator.py       what an operator does to a running cluster (the admin API)
Support beside them: members.py (group members, loaded in order), blocks.py (who blocked
whom), presence.py (views of friends and groups with live state), tokens.py (resume tokens),
throttle.py, quotas.py, passwords.py, composer.py (the parts of a chat message beyond its
text: capabilities register them in build_node instead of changing chat.py).
"""
