# A protected column added by a migration: bytea behind pgcloak (:binary),
# text in the plaintext twin of the ORM matrix. The model declares it
# `attribute :nickname, :string`; pgcloak's config gets the rule (type: text)
# before the application uses it.
class AddNickname < ActiveRecord::Migration[6.1]
  def change
    add_column :customers, :nickname, ENV['ORM_PROTECTED'] == '1' ? :binary : :text
  end
end
